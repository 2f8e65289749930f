// HTTP-POST binding (SAML Bindings §3.5.5.2): submit the form at once; the button remains for no-JS users.
// requestSubmit() submits as the button would, through submitonce.js (loaded before this file), so that a click
// on the button while the message is on its way sends nothing more.
(function () {
  "use strict";
  var form = document.getElementById("saml-post");
  if (typeof form.requestSubmit === "function") {
    form.requestSubmit();
  } else if (form.dispatchEvent(new Event("submit", {cancelable: true}))) {
    form.submit(); // older browsers: the dispatched event lets submitonce.js hold back later clicks
  }
}());
