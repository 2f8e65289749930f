// HTTP-POST binding (SAML Bindings §3.5.5.2): submit the form at once; the button remains for no-JS users.
document.getElementById("saml-post").submit();
