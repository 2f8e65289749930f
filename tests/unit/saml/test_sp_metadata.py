"""Finding a service provider's ACS endpoint in its metadata (SAML Metadata §2.2.3, Core §3.4.1)."""

from __future__ import annotations

import pytest

from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT
from broker.saml.metadata import Endpoint, SpMetadata

HTTP_ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
URL = "https://sp.example/saml2-acs.php/default-sp"
OTHER = "https://sp.example/other-acs"


def metadata(*endpoints: Endpoint) -> SpMetadata:
    return SpMetadata("https://sp.example", endpoints, (), (), (), False, False, ())


@pytest.mark.parametrize("endpoints", [
    pytest.param((Endpoint(HTTP_ARTIFACT, URL, index=0), Endpoint(HTTP_POST, URL, index=1)),
                 id="artifact-listed-first"),
    pytest.param((Endpoint(HTTP_POST, URL, index=0), Endpoint(HTTP_ARTIFACT, URL, index=1)),
                 id="post-listed-first"),
    pytest.param((Endpoint(HTTP_POST, OTHER, index=0), Endpoint(HTTP_ARTIFACT, URL, index=1),
                  Endpoint(HTTP_POST, URL, index=2)), id="after-another-url"),
])
def test_the_url_is_found_with_the_binding_asked(endpoints: tuple[Endpoint, ...]) -> None:
    """SimpleSAMLphp lists its ACS URL for HTTP-Artifact before HTTP-POST: the Location alone found the Artifact
    endpoint, and the broker refused a valid request for that URL (acs_url_not_registered)."""
    found = metadata(*endpoints).acs_by_url(URL, HTTP_POST)
    assert found is not None
    assert (found.binding, found.location) == (HTTP_POST, URL)


@pytest.mark.parametrize(("url", "binding"), [
    pytest.param(URL, HTTP_REDIRECT, id="binding-not-listed-for-the-url"),
    pytest.param(URL + "/", HTTP_POST, id="url-with-trailing-slash"),
    pytest.param(OTHER, HTTP_ARTIFACT, id="binding-listed-only-for-another-url"),
])
def test_a_location_and_binding_pair_not_listed_is_not_found(url: str, binding: str) -> None:
    meta = metadata(Endpoint(HTTP_ARTIFACT, URL, index=0), Endpoint(HTTP_POST, URL, index=1),
                    Endpoint(HTTP_POST, OTHER, index=2))
    assert meta.acs_by_url(url, binding) is None


def test_the_artifact_endpoint_is_found_when_asked_for() -> None:
    found = metadata(Endpoint(HTTP_POST, URL, index=1), Endpoint(HTTP_ARTIFACT, URL, index=0)).acs_by_url(
        URL, HTTP_ARTIFACT)
    assert found is not None
    assert found.index == 0
