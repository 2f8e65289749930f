// A form marked data-submit-once is sent once. The broker's forms each carry a one-time message: the choice of
// municipality consumes the pending login, a SAML Response or LogoutResponse is refused by its recipient when it
// comes a second time (SAML Profiles §4.1.4.5). A double click, or a click while the answer to the first post
// loads, would start a second post that replaces the first navigation, and the user would see the refusal of
// the second instead of the answer to the first. So every later submission is cancelled and the form's buttons
// are disabled once it is on its way; a page shown again from the back/forward cache (pageshow with
// persisted) can be sent again. Without JavaScript the form works as plain HTML.
(function () {
  "use strict";
  var SENT = "sent";

  function buttons(form, disabled) {
    var list = form.querySelectorAll("button[type=submit], input[type=submit]");
    for (var i = 0; i < list.length; i++) {
      list[i].disabled = disabled;
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-submit-once") || event.defaultPrevented) {
      return;
    }
    if (form.dataset.submitOnce === SENT) {
      event.preventDefault();
      return;
    }
    form.dataset.submitOnce = SENT;
    // after the submission has taken the form's fields: a disabled button is no part of the form data
    window.setTimeout(function () { buttons(form, true); }, 0);
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) {
      return; // the first showing: the page's own load (an auto-submit may be on its way already)
    }
    var forms = document.querySelectorAll("form[data-submit-once]");
    for (var i = 0; i < forms.length; i++) {
      forms[i].dataset.submitOnce = "";
      buttons(forms[i], false);
    }
  });
}());
