// A real OpenID Connect provider for Grapevine's sign-in tests: the certified `oidc-provider` package (pinned in
// package-lock.json), with one client, a few people, a plain HTML sign-in form and consent granted to that client.
//
//   node provider.mjs --port 0 --client-id ID --client-secret SECRET --redirect-uri URI [--tamper-id-token]
//
// (or GRAPEVINE_TEST_OIDC_CLIENT_ID, …_CLIENT_SECRET, …_REDIRECT_URI in the environment). Once listening on
// 127.0.0.1 it prints one JSON line, {"issuer": "http://127.0.0.1:PORT"}, and serves until killed.
//
// The client is registered as a `native` application so that, as RFC 8252 section 7.3 says for loopback redirects,
// its redirect URI on 127.0.0.1 matches on any port: Grapevine's test server learns its port only once bound, after
// this provider is already running.
//
// With --tamper-id-token, the token endpoint's answer carries an ID token whose signature has one character changed,
// so a test can prove such a token is refused.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { interactionPolicy } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'client-id': { type: 'string', default: process.env.GRAPEVINE_TEST_OIDC_CLIENT_ID },
    'client-secret': { type: 'string', default: process.env.GRAPEVINE_TEST_OIDC_CLIENT_SECRET },
    'redirect-uri': { type: 'string', default: process.env.GRAPEVINE_TEST_OIDC_REDIRECT_URI },
    'tamper-id-token': { type: 'boolean', default: false },
  },
});
for (const needed of ['client-id', 'client-secret', 'redirect-uri']) {
  if (!args[needed]) {
    console.error(`provider.mjs: --${needed} is required`);
    process.exit(2);
  }
}

// Everyone this provider knows, by email address; each signs in with PASSWORD.
const PASSWORD = 'provider-password';
const PEOPLE = {
  'ada@example.org': { sub: 'ada-0001', name: 'Ada Lovelace', email_verified: true, groups: ['staff'] },
  'stranger@example.org': { sub: 'stranger-0002', name: 'A Stranger', email_verified: true, groups: ['analysts'] },
  'unverified@example.org': { sub: 'unverified-0003', name: 'Not Verified', email_verified: false, groups: ['analysts'] },
  // As Microsoft Entra ID sends its directory's addresses: no email_verified claim at all.
  'directory@example.org': { sub: 'directory-0004', name: 'From The Directory', groups: [] },
};
const BY_SUBJECT = Object.fromEntries(Object.entries(PEOPLE).map(([email, person]) => [person.sub, { email, ...person }]));

// A signing key made for this run, so no development key (and no warning about one) is used.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key-1', use: 'sig', alg: 'RS256' };

// The default policy, less its rule that a native client's user always sees a consent page: consent for the one
// client is given (loadExistingGrant), and being `native` is only how its loopback redirect matches any port.
function consentGiven() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.remove('native_client_prompt');
  return policy;
}

const server = createServer();
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: [args['redirect-uri']],
      application_type: 'native',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { methods: ['S256'], required: () => true },
  // `groups` belongs to no scope: a client asks for it with the `claims` request parameter.
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: null,
  },
  // Put the email claims into the ID token itself (as Entra ID and most providers do), not only the userinfo answer.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    policy: consentGiven(),
  },
  ttl: { Interaction: 600, Grant: 600, Session: 600 },
  async findAccount(ctx, subject) {
    const person = BY_SUBJECT[subject];
    if (!person) return undefined;
    return {
      accountId: subject,
      async claims() {
        return {
          sub: subject, email: person.email, email_verified: person.email_verified, name: person.name, groups: person.groups,
        };
      },
    };
  },
  // Consent for the one client is given: whatever it asks for once signed in is granted.
  async loadExistingGrant(ctx) {
    const { accountId } = ctx.oidc.account;
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
});

if (args['tamper-id-token']) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.body && typeof ctx.body.id_token === 'string') {
      const [header, payload, signature] = ctx.body.id_token.split('.');
      // A character in the middle of the signature stands for six whole bits of it, so changing it changes the signature.
      const at = Math.floor(signature.length / 2);
      const changed = signature[at] === 'A' ? 'B' : 'A';
      const tampered = signature.slice(0, at) + changed + signature.slice(at + 1);
      ctx.body = { ...ctx.body, id_token: `${header}.${payload}.${tampered}` };
    }
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function signInPage(uid, error) {
  const problem = error ? `<p role="alert" id="problem">${escapeHtml(error)}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to the test identity provider</title></head>
<body>
<main>
<h1>Sign in to the test identity provider</h1>
${problem}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<p><label for="email">Email address</label><br><input id="email" name="email" type="email" autocomplete="username" required></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
</main>
</body>
</html>
`;
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

// The sign-in interaction: a form with no JavaScript, answered by oidc-provider's interaction API.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'That sign-in does not match this browser.');
    return;
  }
  if (details.prompt.name !== 'login') {
    // Consent is given in loadExistingGrant, so only the sign-in is ever asked for.
    send(res, 500, `The test provider cannot ask for ${escapeHtml(details.prompt.name)}: ${escapeHtml(JSON.stringify(details.prompt.reasons))}`);
    return;
  }
  if (action === undefined && req.method === 'GET') {
    send(res, 200, signInPage(uid));
    return;
  }
  if (action === 'login' && req.method === 'POST') {
    const form = await formBody(req);
    const email = (form.get('email') || '').trim().toLowerCase();
    const person = PEOPLE[email];
    if (!person || form.get('password') !== PASSWORD) {
      send(res, 200, signInPage(uid, 'The email address or password is wrong.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: person.sub } }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 405, 'Not allowed.');
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/([a-z]+))?\/?(?:\?.*)?$/.exec(req.url);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((error) => {
    console.error('provider.mjs: interaction failed:', error);
    if (!res.headersSent) send(res, 400, `The sign-in could not go on: ${escapeHtml(error.message)}`);
  });
});

console.log(JSON.stringify({ issuer }));
