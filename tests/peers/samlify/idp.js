#!/usr/bin/env node
// A municipal SAML IdP built with samlify (https://github.com/tngan/samlify), for interoperability tests of the
// broker's SP side (tests/flows/test_interop_samlify.py, driven by tests/factories/samlify_idp.py).
//
//   node idp.js --entity-id URI --key idp.key --cert idp.crt [--host 127.0.0.1] [--port 0]
//
// Listens on loopback (port 0: a free one) and prints one JSON line, {"port": N, "base_url": "http://..."}, once it
// accepts connections. Everything SAML is samlify's own: its metadata, its verification of inbound messages
// (schema-validated by @authenio/samlify-node-xmllint, signatures checked against the relying party's metadata), its
// Responses (createLoginResponse with a custom template), LogoutRequests and LogoutResponses. This script only
// carries messages between HTTP and samlify, and chooses samlify's settings per Response from the profile the test
// posts. Endpoints:
//
//   GET  /metadata[?sso=..&slo=..]      the IdP's metadata (samlify's), its SingleSignOnService and SingleLogoutService
//                                       bindings as asked (default: redirect,post)
//   POST /relying-parties               body: an SP's metadata XML; trusted from now on (by its entityID)
//   GET  /sso, POST /sso                an AuthnRequest (HTTP-Redirect or HTTP-POST): samlify verifies it; answers a
//                                       login page (a form naming the pending login) or 400 with samlify's error
//   POST /login                         form: login=<id>, profile=<JSON>; answers the auto-submitting HTTP-POST form
//                                       carrying samlify's Response to the SP's ACS
//   GET  /slo, POST /slo [?reply=post]  a LogoutRequest (answered with samlify's signed LogoutResponse: a 303 to the
//                                       SP, or with reply=post its auto-submitting form) or a LogoutResponse
//                                       (verified; 200 with what samlify extracted)
//   POST /logout-requests               JSON {sp, name_id, name_id_format, session_index, relay_state, binding}:
//                                       samlify's signed LogoutRequest to the SP, as {url} (HTTP-Redirect) or
//                                       {action, fields} (HTTP-POST)
//
// Every answer to an inbound message carries X-Samlify-Extract: what samlify read from it (JSON). Errors are
// 400 text/plain with samlify's error message, also in X-Samlify-Error.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const zlib = require('zlib');
const peer = require('./peer');

const {
  samlify, PROTOCOL_NS, ASSERTION_NS, Refused, options, readBody, formFields, inbound, bindingOf, escapeXml, send,
  extractHeader, postForm, baseUrl, serve,
} = peer;
const { Constants, Extractor, SamlLib } = samlify;
const BINDINGS = Constants.namespace.binding;
const RSA_SHA256 = Constants.algorithms.signature.RSA_SHA256;
const SUCCESS = Constants.StatusCode.Success;
const XS = 'http://www.w3.org/2001/XMLSchema';
const XSI = 'http://www.w3.org/2001/XMLSchema-instance';

// --- command line --------------------------------------------------------------------------------------------

const args = options(process.argv.slice(2), ['entity-id', 'key', 'cert'],
  'node idp.js --entity-id URI --key FILE --cert FILE');
const ENTITY_ID = args['entity-id'];
const PRIVATE_KEY = fs.readFileSync(args.key, 'utf8');
const CERTIFICATE = fs.readFileSync(args.cert, 'utf8');

// --- samlify entities ------------------------------------------------------------------------------------------

const relyingParties = new Map(); // entityID -> metadata XML (as the SP published it)
const pendingLogins = new Map(); // login id -> { sp: entityID, parsed: samlify's parse of the AuthnRequest, relayState }

// The Response template: samlify's default login response template (libsaml.defaultLoginResponseTemplate) with the
// AuthnStatement that SAML Profiles §4.1.4.2 requires of a Web SSO assertion and that the default leaves empty.
const RESPONSE_TEMPLATE =
  `<samlp:Response xmlns:samlp="${PROTOCOL_NS}" xmlns:saml="${ASSERTION_NS}" ID="{ID}" Version="2.0" ` +
  'IssueInstant="{IssueInstant}" Destination="{Destination}" InResponseTo="{InResponseTo}">' +
  '<saml:Issuer>{Issuer}</saml:Issuer>' +
  '<samlp:Status><samlp:StatusCode Value="{StatusCode}"/></samlp:Status>' +
  `<saml:Assertion xmlns:xsi="${XSI}" xmlns:xs="${XS}" xmlns:saml="${ASSERTION_NS}" ID="{AssertionID}" ` +
  'Version="2.0" IssueInstant="{IssueInstant}">' +
  '<saml:Issuer>{Issuer}</saml:Issuer>' +
  '<saml:Subject><saml:NameID Format="{NameIDFormat}">{NameID}</saml:NameID>' +
  '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">' +
  '<saml:SubjectConfirmationData NotOnOrAfter="{SubjectConfirmationDataNotOnOrAfter}" Recipient="{SubjectRecipient}" ' +
  'InResponseTo="{InResponseTo}"/></saml:SubjectConfirmation></saml:Subject>' +
  '<saml:Conditions NotBefore="{ConditionsNotBefore}" NotOnOrAfter="{ConditionsNotOnOrAfter}">' +
  '<saml:AudienceRestriction><saml:Audience>{Audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>' +
  '<saml:AuthnStatement AuthnInstant="{AuthnInstant}" SessionIndex="{SessionIndex}"><saml:AuthnContext>' +
  '<saml:AuthnContextClassRef>{AuthnContextClassRef}</saml:AuthnContextClassRef></saml:AuthnContext>' +
  '</saml:AuthnStatement>{AttributeStatement}</saml:Assertion></samlp:Response>';

// An error Response (SAML Core §3.2.2.2): a status with an optional second-level code and message, no assertion.
const ERROR_TEMPLATE =
  `<samlp:Response xmlns:samlp="${PROTOCOL_NS}" xmlns:saml="${ASSERTION_NS}" ID="{ID}" Version="2.0" ` +
  'IssueInstant="{IssueInstant}" Destination="{Destination}" InResponseTo="{InResponseTo}">' +
  '<saml:Issuer>{Issuer}</saml:Issuer>' +
  '<samlp:Status><samlp:StatusCode Value="{StatusCode}">{SecondLevelStatus}</samlp:StatusCode>' +
  '<samlp:StatusMessage>{StatusMessage}</samlp:StatusMessage></samlp:Status></samlp:Response>';

function endpoints(bindings, path) {
  return bindings.map((name) => {
    if (!BINDINGS[name]) {
      throw new Error(`unknown binding ${name}`);
    }
    return { Binding: BINDINGS[name], Location: `${baseUrl()}${path}` };
  });
}

// One IdentityProvider per use: samlify keeps encryption, NameID format and the Response template as entity
// settings (an IdP's per-relying-party configuration), so the profile of each Response becomes those settings.
function identityProvider(profile = {}, ssoBindings = ['redirect', 'post'], sloBindings = ['redirect', 'post']) {
  const encrypt = profile.encrypt || null;
  const setting = {
    entityID: ENTITY_ID,
    privateKey: PRIVATE_KEY,
    signingCert: CERTIFICATE,
    wantAuthnRequestsSigned: true,
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    requestSignatureAlgorithm: profile.signature_algorithm || RSA_SHA256, // samlify signs Responses with it too
    nameIDFormat: [profile.name_id_format || Constants.namespace.format.persistent],
    singleSignOnService: endpoints(ssoBindings, '/sso'),
    singleLogoutService: endpoints(sloBindings, '/slo'),
    isAssertionEncrypted: Boolean(encrypt),
  };
  if (encrypt && encrypt.data) {
    setting.dataEncryptionAlgorithm = encrypt.data;
  }
  if (encrypt && encrypt.key) {
    setting.keyEncryptionAlgorithm = encrypt.key;
  }
  if (profile.prefixes) {
    setting.tagPrefix = { protocol: profile.prefixes.protocol, assertion: profile.prefixes.assertion };
  }
  if (profile.status) {
    setting.loginResponseTemplate = { context: ERROR_TEMPLATE, attributes: [] };
  } else if (profile.template !== 'samlify-default') {
    const attributes = (profile.attributes || []).map((attribute, i) => ({
      name: attribute.name,
      nameFormat: attribute.name_format || 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
      valueTag: `value${i}`, // samlify's customTagReplacement fills it as {attrValue<i>}
      valueXsiType: attribute.xsi_type || 'xs:string',
    }));
    // an empty AttributeStatement is not schema-valid: none at all when there is nothing to say
    const context = attributes.length ? RESPONSE_TEMPLATE : RESPONSE_TEMPLATE.replace('{AttributeStatement}', '');
    setting.loginResponseTemplate = { context, attributes };
  }
  return samlify.IdentityProvider(setting);
}

// Set (or add) an attribute of the SPSSODescriptor start tag in the relying party's metadata.
function withDescriptorAttribute(xml, name, value) {
  const start = /<((?:[\w.-]+:)?SPSSODescriptor)\b([^>]*)>/;
  const match = start.exec(xml);
  if (!match) {
    throw new Error('the relying party metadata has no SPSSODescriptor');
  }
  const pattern = new RegExp(`\\s${name}="[^"]*"`);
  const attributes = pattern.test(match[2])
    ? match[2].replace(pattern, ` ${name}="${value}"`)
    : `${match[2]} ${name}="${value}"`;
  return xml.slice(0, match.index) + `<${match[1]}${attributes}>` + xml.slice(match.index + match[0].length);
}

// The relying party as samlify sees it. samlify decides what a Response signs from the SP alone: the Assertion when
// the SP's metadata says WantAssertionsSigned="true", the Response when the SP setting wantMessageSigned is true or
// the Assertion is not to be signed. It has no IdP-side setting for "sign the Response only", so, as an operator of
// a samlify IdP would, the local copy of the relying party's metadata is edited for that (the broker publishes
// WantAssertionsSigned="true"). samlify signs LogoutRequests and LogoutResponses to an SP only when that SP's
// settings ask for it (wantLogoutRequestSigned, wantLogoutResponseSigned), which the broker requires.
function serviceProvider(entityID, sign = 'assertion', transforms = undefined) {
  const published = relyingParties.get(entityID);
  if (published === undefined) {
    throw new Error(`unknown relying party ${JSON.stringify(entityID)}`);
  }
  const assertionSigned = sign === 'assertion' || sign === 'both';
  return samlify.ServiceProvider({
    metadata: withDescriptorAttribute(published, 'WantAssertionsSigned', String(assertionSigned)),
    wantMessageSigned: sign === 'response' || sign === 'both',
    // the Reference transforms of samlify's signatures (default: enveloped-signature, exclusive c14n)
    transformationAlgorithms: transforms,
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
  });
}

// --- reading inbound messages ------------------------------------------------------------------------------------

function decodedMessage(binding, value) {
  const bytes = Buffer.from(value, 'base64');
  return (binding === 'redirect' ? zlib.inflateRawSync(bytes) : bytes).toString('utf8');
}

function issuerOf(xml, element) {
  const found = Extractor.extract(xml, [{ key: 'issuer', localPath: [element, 'Issuer'], attributes: [] }]);
  return found.issuer;
}

const AUTHN_REQUEST_FIELDS = [
  {
    key: 'request',
    localPath: ['AuthnRequest'],
    attributes: ['ID', 'IssueInstant', 'Destination', 'AssertionConsumerServiceURL', 'ProtocolBinding', 'ForceAuthn',
      'IsPassive'],
  },
  { key: 'issuer', localPath: ['AuthnRequest', 'Issuer'], attributes: [] },
  { key: 'nameIDPolicy', localPath: ['AuthnRequest', 'NameIDPolicy'], attributes: ['Format', 'AllowCreate'] },
  {
    key: 'requestedAuthnContext',
    localPath: ['AuthnRequest', 'RequestedAuthnContext'],
    attributes: ['Comparison'],
  },
  {
    key: 'authnContextClassRef',
    localPath: ['AuthnRequest', 'RequestedAuthnContext', 'AuthnContextClassRef'],
    attributes: [],
  },
];

// --- HTTP --------------------------------------------------------------------------------------------------------

function messageOf(message) {
  const carried = message.binding === 'redirect' ? message.request.query : message.request.body;
  const value = carried[message.parameter];
  if (!value) {
    throw new Refused(`no ${message.parameter}`);
  }
  return { xml: decodedMessage(message.binding, value), relayState: carried.RelayState };
}

// GET|POST /sso: samlify verifies the AuthnRequest of a trusted SP (schema, signature with the SP's metadata key)
async function sso(req, res, url) {
  const message = await inbound(req, url);
  if (message.parameter !== 'SAMLRequest') {
    throw new Refused('no SAMLRequest');
  }
  const { xml, relayState } = messageOf(message);
  const spEntityID = issuerOf(xml, 'AuthnRequest');
  const sp = serviceProvider(spEntityID);
  const idp = identityProvider();
  const parsed = await idp.parseLoginRequest(sp, message.binding, message.request);
  const extract = { ...Extractor.extract(parsed.samlContent, AUTHN_REQUEST_FIELDS), sigAlg: parsed.sigAlg || null,
    binding: message.binding, relayState: relayState === undefined ? null : relayState };
  // what samlify leaves to the application (SAML Profiles §4.1.4.1, Bindings §3.4.5.2, §3.5.5.2)
  const acs = sp.entityMeta.getAssertionConsumerService('post');
  if (extract.request.assertionConsumerServiceUrl !== undefined && extract.request.assertionConsumerServiceUrl !== acs) {
    throw new Refused(`AssertionConsumerServiceURL ${extract.request.assertionConsumerServiceUrl} is not the SP's`);
  }
  if (extract.request.destination !== `${baseUrl()}/sso`) {
    throw new Refused(`Destination ${extract.request.destination} is not this IdP's SSO endpoint`);
  }
  const login = crypto.randomBytes(16).toString('hex');
  pendingLogins.set(login, { sp: spEntityID, parsed, relayState });
  const page = '<!doctype html><html><body><h1>Kommun C (samlify)</h1>' +
    `<form method="post" action="/login"><input type="hidden" name="login" value="${login}">` +
    '<label>Profile <textarea name="profile"></textarea></label><button>Log in</button></form></body></html>';
  send(res, 200, page, { 'Content-Type': 'text/html; charset=utf-8', 'X-Samlify-Extract': extractHeader(extract) });
}

function responseTags(idp, sp, parsed, profile) {
  const now = new Date();
  const later = new Date(now.getTime() + 5 * 60 * 1000);
  const acs = sp.entityMeta.getAssertionConsumerService('post');
  const tags = {
    ID: idp.entitySetting.generateID(),
    AssertionID: idp.entitySetting.generateID(),
    Destination: acs,
    Audience: sp.entityMeta.getEntityID(),
    EntityID: sp.entityMeta.getEntityID(),
    SubjectRecipient: acs,
    Issuer: idp.entityMeta.getEntityID(),
    IssueInstant: now.toISOString(),
    AssertionConsumerServiceURL: acs,
    StatusCode: SUCCESS,
    ConditionsNotBefore: now.toISOString(),
    ConditionsNotOnOrAfter: later.toISOString(),
    SubjectConfirmationDataNotOnOrAfter: later.toISOString(),
    NameIDFormat: profile.name_id_format || Constants.namespace.format.persistent,
    NameID: profile.name_id,
    InResponseTo: parsed.extract.request.id,
    AuthnInstant: profile.authn_instant || now.toISOString(),
    SessionIndex: profile.session_index || idp.entitySetting.generateID(),
    AuthnContextClassRef: profile.authn_context_class_ref,
  };
  (profile.attributes || []).forEach((attribute, i) => {
    tags[`attrValue${i}`] = attribute.value;
  });
  if (profile.status) {
    tags.StatusCode = profile.status.code;
    tags.StatusMessage = profile.status.message;
  }
  return tags;
}

// POST /login: the user is authenticated; samlify builds the Response (createLoginResponse, HTTP-POST binding)
async function login(req, res) {
  const fields = formFields(await readBody(req));
  const pending = pendingLogins.get(fields.login);
  if (pending === undefined) {
    throw new Refused('unknown or used login');
  }
  pendingLogins.delete(fields.login);
  const profile = JSON.parse(fields.profile || '{}');
  const sign = profile.status ? 'response' : profile.sign || 'assertion';
  // an error Response has no Assertion to sign: samlify signs the Response itself when the SP does not want the
  // Assertion signed, which serviceProvider(..., 'response') arranges
  const sp = serviceProvider(pending.sp, sign, profile.transforms);
  const idp = identityProvider(profile);
  let customTagReplacement;
  if (profile.template !== 'samlify-default') {
    customTagReplacement = (template) => {
      const tags = responseTags(idp, sp, pending.parsed, profile);
      let context = template;
      if (profile.status) {
        const prefix = (profile.prefixes && profile.prefixes.protocol) || 'samlp'; // as tagPrefix rewrote the template
        const second = profile.status.second_level
          ? `<${prefix}:StatusCode Value="${escapeXml(profile.status.second_level)}"/>` : '';
        context = context.replace('{SecondLevelStatus}', second);
      }
      return { id: tags.ID, context: SamlLib.replaceTagsByValue(context, tags) };
    };
  }
  const encryptThenSign = Boolean(profile.encrypt && profile.encrypt.order === 'encrypt-then-sign');
  const response = await idp.createLoginResponse(sp, pending.parsed, 'post', { email: profile.name_id }, {
    customTagReplacement,
    encryptThenSign,
    relayState: pending.relayState,
  });
  deliver(res, 'post', response, null);
}

// Where an auto-submitting form (HTTP-POST binding) or a 303 (HTTP-Redirect) sends samlify's message
function deliver(res, binding, made, extract) {
  const headers = extract ? { 'X-Samlify-Extract': extractHeader(extract) } : {};
  if (binding === 'redirect') {
    send(res, 303, '', { Location: made.context, ...headers });
    return;
  }
  const fields = { [made.type]: made.context, RelayState: made.relayState };
  send(res, 200, postForm(made.entityEndpoint, fields), { 'Content-Type': 'text/html; charset=utf-8', ...headers });
}

// GET|POST /slo[?reply=redirect|post]: a LogoutRequest (answered by samlify's LogoutResponse with the binding
// ``reply`` names, HTTP-Redirect by default, as the IdP's configuration would choose it) or a LogoutResponse (checked),
// each verified by samlify
async function slo(req, res, url) {
  const reply = bindingOf(url.searchParams.get('reply') || 'redirect');
  const message = await inbound(req, url);
  const { xml, relayState } = messageOf(message);
  const idp = identityProvider();
  if (message.parameter === 'SAMLRequest') {
    const spEntityID = issuerOf(xml, 'LogoutRequest');
    const sp = serviceProvider(spEntityID);
    const parsed = await idp.parseLogoutRequest(sp, message.binding, message.request);
    const extract = { ...parsed.extract, sigAlg: parsed.sigAlg || null, binding: message.binding,
      relayState: relayState === undefined ? null : relayState };
    const answer = idp.createLogoutResponse(sp, parsed, reply, { relayState: relayState || '' });
    deliver(res, reply, { type: 'SAMLResponse', ...answer }, extract);
    return;
  }
  const spEntityID = issuerOf(xml, 'LogoutResponse');
  const sp = serviceProvider(spEntityID);
  const parsed = await idp.parseLogoutResponse(sp, message.binding, message.request);
  const extract = { ...parsed.extract, sigAlg: parsed.sigAlg || null, binding: message.binding,
    relayState: relayState === undefined ? null : relayState };
  send(res, 200, JSON.stringify(extract), { 'Content-Type': 'application/json', 'X-Samlify-Extract': extractHeader(extract) });
}

// POST /logout-requests: an IdP-initiated logout (samlify's createLogoutRequest, signed), by HTTP-Redirect (a URL)
// or HTTP-POST (a form's action and fields)
async function logoutRequest(req, res) {
  const wanted = JSON.parse(await readBody(req));
  const binding = bindingOf(wanted.binding || 'redirect');
  const sp = serviceProvider(wanted.sp);
  const idp = identityProvider({ name_id_format: wanted.name_id_format });
  const made = idp.createLogoutRequest(sp, binding, {
    logoutNameID: wanted.name_id,
    sessionIndex: wanted.session_index === null ? undefined : wanted.session_index,
  }, { relayState: wanted.relay_state || '' });
  const answer = binding === 'redirect'
    ? { id: made.id, binding, url: made.context }
    : { id: made.id, binding, action: made.entityEndpoint, fields: { SAMLRequest: made.context, RelayState: made.relayState } };
  send(res, 200, JSON.stringify(answer), { 'Content-Type': 'application/json' });
}

async function trust(req, res) {
  const xml = await readBody(req);
  const sp = samlify.ServiceProvider({ metadata: xml });
  const entityID = sp.entityMeta.getEntityID();
  relyingParties.set(entityID, xml);
  send(res, 200, JSON.stringify({
    entity_id: entityID,
    acs: sp.entityMeta.getAssertionConsumerService('post'),
    slo: sp.entityMeta.getSingleLogoutService('redirect'),
    want_assertions_signed: sp.entityMeta.isWantAssertionsSigned(),
    authn_requests_signed: sp.entityMeta.isAuthnRequestSigned(),
    encryption_certificate: Boolean(sp.entityMeta.getX509Certificate('encryption')),
  }), { 'Content-Type': 'application/json' });
}

async function route(req, res) {
  const url = new URL(req.url, baseUrl());
  const key = `${req.method} ${url.pathname}`;
  switch (key) {
    case 'GET /metadata': {
      const sso = (url.searchParams.get('sso') || 'redirect,post').split(',');
      const slo = (url.searchParams.get('slo') || 'redirect,post').split(',');
      send(res, 200, identityProvider({}, sso, slo).getMetadata(), { 'Content-Type': 'application/samlmetadata+xml' });
      return;
    }
    case 'POST /relying-parties':
      await trust(req, res);
      return;
    case 'GET /sso':
    case 'POST /sso':
      await sso(req, res, url);
      return;
    case 'POST /login':
      await login(req, res);
      return;
    case 'GET /slo':
    case 'POST /slo':
      await slo(req, res, url);
      return;
    case 'POST /logout-requests':
      await logoutRequest(req, res);
      return;
    default:
      send(res, 404, `no ${key}\n`, { 'Content-Type': 'text/plain' });
  }
}

serve(args, route, (res, err, text, oneLine) => {
  send(res, 400, `${text}\n`, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Samlify-Error': oneLine });
});
