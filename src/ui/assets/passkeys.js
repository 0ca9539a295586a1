// Clearance's passkey ceremonies: the one script of its pages besides the SimpleWebAuthn browser
// bundle, both served from Clearance's own origin and allowed by the page's CSP by exact URL.
//
// A form marked data-passkey="login" or "register" is shown only when the browser can use
// passkeys. Submitting it asks Clearance for the ceremony's options (a POST to data-options with
// the form's CSRF token, and the username typed in data-username-field, if any), runs the
// ceremony (navigator.credentials through SimpleWebAuthnBrowser), puts the browser's answer in
// the form's hidden "credential" field, and submits the form: Clearance verifies it and answers
// with a redirect or a page, as for any other form. Nothing here decides anything.
(function () {
  'use strict';
  var lib = window.SimpleWebAuthnBrowser;
  if (!lib || !lib.browserSupportsWebAuthn()) return;

  function say(section, text) {
    var region = section && section.querySelector('[data-passkey-error]');
    if (region) region.textContent = text;
  }

  async function ceremony(form) {
    var body = new URLSearchParams();
    body.set('csrf_token', form.elements.namedItem('csrf_token').value);
    var nameField = form.dataset.usernameField && document.getElementById(form.dataset.usernameField);
    if (nameField && nameField.value.trim() !== '') body.set('username', nameField.value.trim());
    var response = await fetch(form.dataset.options, { method: 'POST', body: body, credentials: 'same-origin', cache: 'no-store' });
    if (!response.ok) throw new Error('options');
    var optionsJSON = await response.json();
    var credential = form.dataset.passkey === 'register' ? await lib.startRegistration({ optionsJSON: optionsJSON }) : await lib.startAuthentication({ optionsJSON: optionsJSON });
    form.elements.namedItem('credential').value = JSON.stringify(credential);
    form.submit(); // submit() fires no submit event: this handler does not run again
  }

  document.querySelectorAll('form[data-passkey]').forEach(function (form) {
    var section = form.closest('[data-passkey-section]');
    if (section) section.hidden = false;
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      say(section, '');
      ceremony(form).catch(function (error) {
        if (button) button.disabled = false;
        var cancelled = error && (error.name === 'NotAllowedError' || error.name === 'AbortError');
        say(section, cancelled ? 'The passkey request was cancelled or timed out. Try again.' : 'Your passkey could not be used. Try again, or reload the page.');
      });
    });
  });
})();
