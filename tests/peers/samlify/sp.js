#!/usr/bin/env node
// A regional SAML service provider built with samlify (https://github.com/tngan/samlify), for interoperability tests
// of the broker's IdP side (tests/flows/test_interop_samlify_sp.py, driven by tests/factories/samlify_sp.py).
//
//   node sp.js --entity-id URI --base-url URL --signing-key F --signing-cert F --encryption-key F
//              --encryption-cert F [--host 127.0.0.1] [--port 0]
//
// Listens on loopback (port 0: a free one) and prints one JSON line, {"port": N, "base_url": "http://..."}, once it
// accepts connections. --base-url is the SP's public URL (behind a TLS proxy in a real deployment): its metadata
// names <base-url>/acs and <base-url>/slo, and the test carries the browser's messages for those URLs here.
// Everything SAML is samlify's own: its metadata (ServiceProvider settings), its AuthnRequests and LogoutRequests
// (signed with RSA-SHA256), its verification of the broker's Responses (parseLoginResponse: schema-validated by
// @authenio/samlify-node-xmllint, signatures checked with the key in the broker's metadata, EncryptedAssertions
// decrypted by @authenio/xml-encryption), LogoutRequests and LogoutResponses. This script only carries messages
// between HTTP and samlify and adds the checks samlify leaves to the application (marked below). Endpoints:
//
//   GET  /metadata                   the SP's metadata (samlify's)
//   POST /configure                  JSON {idp_metadata, want_message_signed, assertion_encrypted}: the IdP (the
//                                    broker's metadata) and the SP settings for the next messages; answers what
//                                    samlify read from the IdP's metadata
//   POST /login-requests             JSON {binding, relay_state, force_authn, is_passive, name_id_format,
//                                    authn_context: {comparison, class_refs}}: samlify's signed AuthnRequest as
//                                    {id, url} (HTTP-Redirect) or {id, action, fields} (HTTP-POST)
//   POST /acs                        form: SAMLResponse, RelayState: parseLoginResponse; 200 with what samlify
//                                    extracted, or 400 JSON {error, status_response_signature}
//   POST /logout-requests            JSON {name_id, session_index, binding, relay_state}: samlify's signed
//                                    LogoutRequest, as {id, url} or {id, action, fields}
//   GET  /slo, POST /slo [?reply=post]  a LogoutRequest (verified, answered by samlify's signed LogoutResponse: a 303
//                                    to the IdP, or with reply=post its form) or a LogoutResponse (verified;
//                                    200 with what samlify extracted)
//
// Answers to inbound messages carry X-Samlify-Extract: what samlify read (JSON). Errors are 400 with samlify's
// error message in a JSON body and in X-Samlify-Error.
'use strict';

const fs = require('fs');
const peer = require('./peer');

const {
  samlify, PROTOCOL_NS, ASSERTION_NS, Refused, errorText, options, readBody, formFields, inbound, bindingOf,
  escapeXml, send, sendJson, extractHeader, postForm, baseUrl, serve,
} = peer;
const { Constants, Extractor, SamlLib } = samlify;
const BINDINGS = Constants.namespace.binding;
const FORMATS = Constants.namespace.format;
const RSA_SHA256 = Constants.algorithms.signature.RSA_SHA256;

// --- command line --------------------------------------------------------------------------------------------

const args = options(process.argv.slice(2),
  ['entity-id', 'base-url', 'signing-key', 'signing-cert', 'encryption-key', 'encryption-cert'],
  'node sp.js --entity-id URI --base-url URL --signing-key F --signing-cert F --encryption-key F --encryption-cert F');
const ENTITY_ID = args['entity-id'];
const PUBLIC_URL = args['base-url'].replace(/\/$/, '');
const ACS_URL = `${PUBLIC_URL}/acs`;
const SLO_URL = `${PUBLIC_URL}/slo`;
const SIGNING_KEY = fs.readFileSync(args['signing-key'], 'utf8');
const SIGNING_CERT = fs.readFileSync(args['signing-cert'], 'utf8');
const ENCRYPTION_KEY = fs.readFileSync(args['encryption-key'], 'utf8');
const ENCRYPTION_CERT = fs.readFileSync(args['encryption-cert'], 'utf8');

// --- samlify entities ------------------------------------------------------------------------------------------

// What the test configured (POST /configure): the IdP's metadata as the broker serves it, and the SP's choices
let configured = null;
// Requests of this SP still waiting for their answer: ID -> kind. An answer's InResponseTo must name one (once).
const pendingRequests = new Map();

// The SP as its integrator sets it up: samlify makes its metadata from these settings. AuthnRequests are signed
// (authnRequestsSigned) with RSA-SHA256, assertions must be signed (wantAssertionsSigned); wantMessageSigned and
// isAssertionEncrypted (with the encryption key; see identityProvider for where samlify reads it) are what the test
// chose. samlify signs LogoutRequests and
// LogoutResponses to the IdP when the IdP's settings ask for it, and checks the IdP's when the SP's do.
function serviceProvider(extra = {}) {
  const policy = configured || {};
  return samlify.ServiceProvider({
    ...extra,
    entityID: ENTITY_ID,
    signingCert: SIGNING_CERT,
    encryptCert: ENCRYPTION_CERT,
    privateKey: SIGNING_KEY,
    encPrivateKey: ENCRYPTION_KEY,
    authnRequestsSigned: true,
    wantAssertionsSigned: true,
    wantMessageSigned: Boolean(policy.want_message_signed),
    isAssertionEncrypted: Boolean(policy.assertion_encrypted),
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    requestSignatureAlgorithm: RSA_SHA256,
    // Where samlify puts the enveloped signature of the SP's own HTTP-POST messages. Left unset, samlify 2.13.1
    // fills it in for wantMessageSigned with the place of a Response's signature (after Response/Issuer: the SP's
    // choice about what it receives) and then uses it for the AuthnRequests and LogoutRequests the SP sends, whose
    // signing fails with "the following xpath cannot be used because it was not found". An integrator who wants
    // signed Responses sets the place explicitly, after the Issuer of whatever message is signed (SAML Core §5.4.1,
    // the schema's order: Issuer, then Signature); samlify's defaults without wantMessageSigned put it there too.
    signatureConfig: { prefix: 'ds', location: { reference: "/*/*[local-name(.)='Issuer']", action: 'after' } },
    nameIDFormat: [FORMATS.persistent, FORMATS.transient],
    assertionConsumerService: [{ Binding: BINDINGS.post, Location: ACS_URL }],
    singleLogoutService: [
      { Binding: BINDINGS.redirect, Location: SLO_URL },
      { Binding: BINDINGS.post, Location: SLO_URL },
    ],
  });
}

// The broker as samlify sees it: its metadata, and the local choice to sign logout messages to it and to require
// them signed from it (samlify keeps these as settings of the peer entity; the broker requires signed ones).
function identityProvider() {
  if (configured === null) {
    throw new Refused('no IdP configured (POST /configure first)');
  }
  return samlify.IdentityProvider({
    metadata: configured.idp_metadata,
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    requestSignatureAlgorithm: RSA_SHA256,
    // samlify 2.13.1 decides whether to decrypt a Response from the setting of the entity it came from
    // (flow.js postFlow: from.entitySetting.isAssertionEncrypted), not from the SP's own isAssertionEncrypted: an SP
    // that wants encrypted assertions says so in its IdP entity too, and decrypts with its encPrivateKey. Without
    // it, an EncryptedAssertion in a Response with no signature of its own fails as FAILED_TO_VERIFY_SIGNATURE.
    isAssertionEncrypted: Boolean(configured.assertion_encrypted),
  });
}

// --- AuthnRequests -------------------------------------------------------------------------------------------------

// samlify's default AuthnRequest template (libsaml.defaultLoginRequestTemplate) with the optional IsPassive
// attribute and a RequestedAuthnContext slot (SAML Core §3.4.1), which the default does not offer. Used only when
// the test asks for one of those; a plain login uses samlify's own template.
const LOGIN_REQUEST_TEMPLATE =
  `<samlp:AuthnRequest xmlns:samlp="${PROTOCOL_NS}" xmlns:saml="${ASSERTION_NS}" ID="{ID}" Version="2.0" ` +
  'ForceAuthn="{ForceAuthn}" IsPassive="{IsPassive}" IssueInstant="{IssueInstant}" Destination="{Destination}" ' +
  'ProtocolBinding="{ProtocolBinding}" AssertionConsumerServiceURL="{AssertionConsumerServiceURL}">' +
  '<saml:Issuer>{Issuer}</saml:Issuer><samlp:NameIDPolicy Format="{NameIDFormat}" AllowCreate="{AllowCreate}"/>' +
  '{RequestedAuthnContext}</samlp:AuthnRequest>';

function requestedAuthnContext(wanted) {
  if (!wanted) {
    return '';
  }
  const refs = wanted.class_refs.map((ref) => `<saml:AuthnContextClassRef>${escapeXml(ref)}</saml:AuthnContextClassRef>`);
  return `<samlp:RequestedAuthnContext Comparison="${escapeXml(wanted.comparison || 'exact')}">${refs.join('')}` +
    '</samlp:RequestedAuthnContext>';
}

function customLoginRequest(sp, idp, binding, wanted) {
  return (template) => {
    const id = sp.entitySetting.generateID();
    const tags = {
      ID: id,
      Destination: idp.entityMeta.getSingleSignOnService(binding),
      Issuer: sp.entityMeta.getEntityID(),
      IssueInstant: new Date().toISOString(),
      ProtocolBinding: BINDINGS.post,
      AssertionConsumerServiceURL: sp.entityMeta.getAssertionConsumerService('post'),
      NameIDFormat: wanted.name_id_format || FORMATS.persistent,
      AllowCreate: 'true',
      ForceAuthn: wanted.force_authn ? 'true' : undefined,
      IsPassive: wanted.is_passive ? 'true' : undefined,
    };
    const context = SamlLib.replaceTagsByValue(template, tags)
      .replace('{RequestedAuthnContext}', requestedAuthnContext(wanted.authn_context));
    return { id, context };
  };
}

// POST /login-requests: sp.createLoginRequest, signed (authnRequestsSigned, and the broker's metadata says
// WantAuthnRequestsSigned: samlify refuses to go on when the two disagree)
async function loginRequest(req, res) {
  const wanted = JSON.parse(await readBody(req));
  const binding = bindingOf(wanted.binding || 'redirect');
  const idp = identityProvider();
  const custom = wanted.is_passive || wanted.authn_context || wanted.name_id_format || wanted.force_authn;
  const sp = serviceProvider(custom ? { loginRequestTemplate: { context: LOGIN_REQUEST_TEMPLATE } } : {});
  const made = sp.createLoginRequest(idp, binding, {
    relayState: wanted.relay_state || undefined,
    customTagReplacement: custom ? customLoginRequest(sp, idp, binding, wanted) : undefined,
  });
  pendingRequests.set(made.id, 'login');
  sendJson(res, 200, delivery(made, binding));
}

function delivery(made, binding) {
  if (binding === 'redirect') {
    return { id: made.id, binding, url: made.context };
  }
  const fields = { [made.type]: made.context };
  if (made.relayState) {
    fields.RelayState = made.relayState;
  }
  return { id: made.id, binding, action: made.entityEndpoint, fields };
}

// --- the broker's Response ---------------------------------------------------------------------------------------

// What samlify's loginResponseFields do not read: the NameID's Format, the AuthnContextClassRef and the bearer
// SubjectConfirmationData, read by samlify's own Extractor from the Assertion samlify accepted.
const MORE_ASSERTION_FIELDS = [
  { key: 'nameIDFormat', localPath: ['Assertion', 'Subject', 'NameID'], attributes: ['Format'] },
  {
    key: 'authnContextClassRef',
    localPath: ['Assertion', 'AuthnStatement', 'AuthnContext', 'AuthnContextClassRef'],
    attributes: [],
  },
  {
    key: 'subjectConfirmationData',
    localPath: ['Assertion', 'Subject', 'SubjectConfirmation', 'SubjectConfirmationData'],
    attributes: ['Recipient', 'InResponseTo', 'NotOnOrAfter'],
  },
];

// The Assertion of a Response parseLoginResponse accepted. Its samlContent is the decrypted document when the
// Response's own signature was verified before decryption, but the still encrypted one when the Assertion's
// signature was verified after it (flow.js postFlow keeps the decrypted document only for that check): then
// samlify's decryptAssertion gives the Assertion again.
async function acceptedAssertion(sp, samlContent) {
  const found = Extractor.extract(samlContent, [
    { key: 'assertion', localPath: ['Response', 'Assertion'], attributes: [], context: true },
    { key: 'encrypted', localPath: ['Response', 'EncryptedAssertion'], attributes: [], context: true },
  ]);
  if (found.encrypted) {
    const [, assertion] = await SamlLib.decryptAssertion(sp, samlContent);
    return assertion;
  }
  return found.assertion;
}

function answered(inResponseTo, kind) {
  // SAML Profiles §4.1.4.3, §4.4.4.2: the answer names a request of ours, and each request is answered once
  if (pendingRequests.get(inResponseTo) !== kind) {
    throw new Refused(`InResponseTo ${inResponseTo} names no pending ${kind} request of this SP`);
  }
  pendingRequests.delete(inResponseTo);
}

// POST /acs: sp.parseLoginResponse, then the checks samlify leaves to the application
async function acs(req, res) {
  const fields = formFields(await readBody(req));
  const idp = identityProvider();
  const sp = serviceProvider();
  let parsed;
  try {
    parsed = await sp.parseLoginResponse(idp, 'post', { body: fields });
  } catch (err) {
    // samlify reports a status before it looks at signatures; its own verifier says whether the error Response
    // is signed by the key in the IdP's metadata
    let verified = null;
    if (/ERR_FAILED_STATUS/.test(errorText(err))) {
      const xml = Buffer.from(fields.SAMLResponse || '', 'base64').toString('utf8');
      try {
        [verified] = SamlLib.verifySignature(xml, { metadata: idp.entityMeta, signatureAlgorithm: RSA_SHA256 });
      } catch (verifyError) {
        verified = `verifier threw: ${errorText(verifyError)}`;
      }
    }
    throw new Refused(errorText(err), { status_response_signature: verified });
  }
  const assertion = await acceptedAssertion(sp, parsed.samlContent);
  const more = Extractor.extract(assertion, MORE_ASSERTION_FIELDS.map((f) => ({ ...f, shortcut: assertion })));
  const extract = { ...parsed.extract, ...more, relayState: fields.RelayState === undefined ? null : fields.RelayState };
  // what samlify leaves to the application (SAML Profiles §4.1.4.3, Bindings §3.5.5.2, Core §2.5.1.4)
  if (extract.response.destination !== ACS_URL) {
    throw new Refused(`Destination ${extract.response.destination} is not this SP's ACS`);
  }
  if (extract.audience !== ENTITY_ID) {
    throw new Refused(`Audience ${JSON.stringify(extract.audience)} is not this SP`);
  }
  if (extract.subjectConfirmationData.recipient !== ACS_URL
      || extract.subjectConfirmationData.inResponseTo !== extract.response.inResponseTo) {
    throw new Refused(`SubjectConfirmationData ${JSON.stringify(extract.subjectConfirmationData)} does not confirm ` +
      'this Response at this SP');
  }
  answered(extract.response.inResponseTo, 'login');
  sendJson(res, 200, extract, { 'X-Samlify-Extract': extractHeader(extract) });
}

// --- single logout -----------------------------------------------------------------------------------------------

// POST /logout-requests: sp.createLogoutRequest for the user the broker logged in, signed (the IdP setting
// wantLogoutRequestSigned)
async function logoutRequest(req, res) {
  const wanted = JSON.parse(await readBody(req));
  const binding = bindingOf(wanted.binding || 'redirect');
  const made = serviceProvider().createLogoutRequest(identityProvider(), binding, {
    logoutNameID: wanted.name_id,
    sessionIndex: wanted.session_index === null ? undefined : wanted.session_index,
  }, { relayState: wanted.relay_state || '' });
  pendingRequests.set(made.id, 'logout');
  sendJson(res, 200, delivery({ type: 'SAMLRequest', ...made }, binding));
}

// GET|POST /slo[?reply=redirect|post]: a LogoutRequest from the broker (verified, answered by samlify's signed
// LogoutResponse with the binding ``reply`` names), or the LogoutResponse to ours (verified, InResponseTo checked)
async function slo(req, res, url) {
  const reply = bindingOf(url.searchParams.get('reply') || 'redirect');
  const message = await inbound(req, url);
  const relayState = carried(message).RelayState;
  const idp = identityProvider();
  const sp = serviceProvider();
  const shown = (parsed) => ({ ...parsed.extract, sigAlg: parsed.sigAlg || null, binding: message.binding,
    relayState: relayState === undefined ? null : relayState });
  if (message.parameter === 'SAMLRequest') {
    const parsed = await sp.parseLogoutRequest(idp, message.binding, message.request);
    const extract = shown(parsed);
    // SAML Core §3.7.1 / Bindings §3.4.5.2: what samlify leaves to the application
    if (extract.request.destination !== SLO_URL) {
      throw new Refused(`Destination ${extract.request.destination} is not this SP's SLO endpoint`);
    }
    const answer = sp.createLogoutResponse(idp, parsed, reply, { relayState: relayState || '' });
    const made = { type: 'SAMLResponse', ...answer };
    if (reply === 'redirect') {
      send(res, 303, '', { Location: made.context, 'X-Samlify-Extract': extractHeader(extract) });
      return;
    }
    const fields = { SAMLResponse: made.context, RelayState: made.relayState };
    send(res, 200, postForm(made.entityEndpoint, fields),
      { 'Content-Type': 'text/html; charset=utf-8', 'X-Samlify-Extract': extractHeader(extract) });
    return;
  }
  const parsed = await sp.parseLogoutResponse(idp, message.binding, message.request);
  const extract = shown(parsed);
  if (extract.response.destination !== SLO_URL) {
    throw new Refused(`Destination ${extract.response.destination} is not this SP's SLO endpoint`);
  }
  answered(extract.response.inResponseTo, 'logout');
  sendJson(res, 200, extract, { 'X-Samlify-Extract': extractHeader(extract) });
}

// --- reading inbound messages ------------------------------------------------------------------------------------

function carried(message) {
  const fields = message.binding === 'redirect' ? message.request.query : message.request.body;
  if (!fields[message.parameter]) {
    throw new Refused(`no ${message.parameter}`);
  }
  return fields;
}

// --- HTTP --------------------------------------------------------------------------------------------------------

// POST /configure: the IdP's metadata and the SP's choices; what samlify read from the metadata
async function configure(req, res) {
  const wanted = JSON.parse(await readBody(req));
  configured = wanted;
  pendingRequests.clear();
  const idp = identityProvider();
  const meta = idp.entityMeta;
  sendJson(res, 200, {
    entity_id: meta.getEntityID(),
    sso: { redirect: meta.getSingleSignOnService('redirect'), post: meta.getSingleSignOnService('post') },
    slo: { redirect: meta.getSingleLogoutService('redirect'), post: meta.getSingleLogoutService('post') },
    want_authn_requests_signed: meta.isWantAuthnRequestsSigned(),
    name_id_formats: meta.getNameIDFormat(),
    signing_certificate: meta.getX509Certificate('signing'),
  });
}

async function route(req, res) {
  const url = new URL(req.url, baseUrl());
  const key = `${req.method} ${url.pathname}`;
  switch (key) {
    case 'GET /metadata':
      send(res, 200, serviceProvider().getMetadata(), { 'Content-Type': 'application/samlmetadata+xml' });
      return;
    case 'POST /configure':
      await configure(req, res);
      return;
    case 'POST /login-requests':
      await loginRequest(req, res);
      return;
    case 'POST /acs':
      await acs(req, res);
      return;
    case 'POST /logout-requests':
      await logoutRequest(req, res);
      return;
    case 'GET /slo':
    case 'POST /slo':
      await slo(req, res, url);
      return;
    default:
      send(res, 404, `no ${key}\n`, { 'Content-Type': 'text/plain' });
  }
}

serve(args, route, (res, err, text, oneLine) => {
  const details = err instanceof Refused ? err.details : {};
  sendJson(res, 400, { error: text, ...details }, { 'X-Samlify-Error': oneLine });
});
