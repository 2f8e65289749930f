// What the samlify peers (idp.js, sp.js) share: samlify with its schema validator, the command line, reading
// messages off HTTP (HTTP-Redirect with the octets its signature covers, HTTP-POST forms), writing answers, and the
// loopback server with its ready line. SAML itself stays in each script, with samlify.
'use strict';

const http = require('http');

// stdout carries one line, the ready line of serve(); anything the libraries log (node-xmllint prints a line per
// validation, samlify the cause of a failed decryption) goes to stderr, the log the test reads
console.log = (...items) => console.error(...items);

let samlify;
let validator;
try {
  samlify = require('samlify');
  validator = require('@authenio/samlify-node-xmllint');
} catch (err) {
  process.stderr.write(`samlify is not installed (${err.message}); run: npm ci --prefix tests/peers/samlify\n`);
  process.exit(3);
}

// samlify refuses to parse anything until a schema validator is set (its README, "Installation").
samlify.setSchemaValidator(validator);

const PROTOCOL_NS = 'urn:oasis:names:tc:SAML:2.0:protocol';
const ASSERTION_NS = 'urn:oasis:names:tc:SAML:2.0:assertion';

// A message this script refuses itself (samlify refuses with its own errors); details go into a JSON answer.
class Refused extends Error {
  constructor(message, details = {}) {
    super(message);
    this.details = details;
  }
}

function errorText(err) {
  // samlify rejects with Error objects, and some of its validators with bare strings
  return err instanceof Error ? err.message : String(err);
}

// --name value pairs; host and port default to a free loopback port
function options(argv, required, usage) {
  const found = { host: '127.0.0.1', port: '0' };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    const value = argv[i + 1];
    if (!name.startsWith('--') || value === undefined) {
      throw new Error(`usage: ${usage} [--host H] [--port P]; got ${name}`);
    }
    found[name.slice(2)] = value;
  }
  for (const option of required) {
    if (!found[option]) {
      throw new Error(`--${option} is required`);
    }
  }
  return found;
}

function redirectRequest(rawQuery, parameter) {
  // SAML Bindings §3.4.4.1: the signature covers the parameters exactly as they arrived (URL-encoded), in the
  // order SAMLRequest|SAMLResponse, RelayState, SigAlg
  const raw = new Map();
  for (const part of rawQuery.split('&')) {
    const eq = part.indexOf('=');
    if (eq > 0) {
      raw.set(part.slice(0, eq), part.slice(eq + 1));
    }
  }
  const query = {};
  for (const [key, value] of new URLSearchParams(rawQuery)) {
    query[key] = value;
  }
  const octetString = [parameter, 'RelayState', 'SigAlg']
    .filter((key) => raw.has(key))
    .map((key) => `${key}=${raw.get(key)}`)
    .join('&');
  return { query, octetString };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > 4 * 1024 * 1024) {
        reject(new Refused('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function formFields(body) {
  const fields = {};
  for (const [key, value] of new URLSearchParams(body)) {
    fields[key] = value;
  }
  return fields;
}

// A SAML message arriving by HTTP-Redirect (GET) or HTTP-POST, as samlify's parse* functions take it
async function inbound(req, url) {
  if (req.method === 'GET') {
    const rawQuery = url.search.startsWith('?') ? url.search.slice(1) : '';
    const parameter = url.searchParams.has('SAMLRequest') ? 'SAMLRequest' : 'SAMLResponse';
    return { binding: 'redirect', parameter, request: redirectRequest(rawQuery, parameter) };
  }
  const body = formFields(await readBody(req));
  const parameter = body.SAMLRequest !== undefined ? 'SAMLRequest' : 'SAMLResponse';
  return { binding: 'post', parameter, request: { body } };
}

function bindingOf(name) {
  if (name !== 'redirect' && name !== 'post') {
    throw new Refused(`unknown binding ${name}`);
  }
  return name;
}

function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

function sendJson(res, status, document, headers = {}) {
  send(res, status, JSON.stringify(document), { 'Content-Type': 'application/json', ...headers });
}

function extractHeader(extract) {
  const shown = { ...extract };
  delete shown.signature; // the XML of the signature: not what a test asserts on
  // JSON with every non-ASCII character escaped, so that it is a valid header value
  return JSON.stringify(shown).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// The auto-submitting HTTP-POST form (SAML Bindings §3.5.4)
function postForm(action, fields) {
  const inputs = Object.entries(fields)
    .filter(([, value]) => value !== undefined && value !== null && value !== '')
    .map(([name, value]) => `<input type="hidden" name="${escapeXml(name)}" value="${escapeXml(value)}">`)
    .join('');
  return '<!doctype html><html><body onload="document.forms[0].submit()">' +
    `<form method="post" action="${escapeXml(action)}">${inputs}<noscript><button>Continue</button></noscript>` +
    '</form></body></html>';
}

let listening = ''; // the loopback URL, known once listening

function baseUrl() {
  return listening;
}

// Serve route(req, res) on args.host:args.port; a rejected route is answered by refuse(res, err, text, oneLine).
// Prints the ready line {"port": N, "base_url": "http://..."} once the schema validator works and the server
// listens; SIGTERM and SIGINT end it.
function serve(args, route, refuse) {
  const server = http.createServer((req, res) => {
    route(req, res).catch((err) => {
      const text = errorText(err);
      const oneLine = text.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
      if (!res.headersSent) {
        refuse(res, err, text, oneLine);
      } else {
        res.destroy();
      }
    });
  });

  // node-xmllint is libxml2 compiled to asm.js: its first validation compiles it (seconds), later ones take
  // milliseconds. That first one is done here, before the peer reports that it is ready.
  const warmUp = `<samlp:AuthnRequest xmlns:samlp="${PROTOCOL_NS}" xmlns:saml="${ASSERTION_NS}" ID="_warm-up" ` +
    'Version="2.0" IssueInstant="2000-01-01T00:00:00Z"><saml:Issuer>warm-up</saml:Issuer></samlp:AuthnRequest>';
  validator.validate(warmUp).then(() => {
    server.listen(Number(args.port), args.host, () => {
      const { port } = server.address();
      listening = `http://${args.host}:${port}`;
      process.stdout.write(`${JSON.stringify({ port, base_url: listening })}\n`);
    });
  }, (err) => {
    process.stderr.write(`the schema validator does not work: ${err}\n`);
    process.exit(4);
  });

  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => server.close(() => process.exit(0)));
  }
}

module.exports = {
  samlify, PROTOCOL_NS, ASSERTION_NS, Refused, errorText, options, redirectRequest, readBody, formFields, inbound,
  bindingOf, escapeXml, send, sendJson, extractHeader, postForm, baseUrl, serve,
};
