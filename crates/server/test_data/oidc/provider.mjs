// A real OpenID Connect provider for spanblame's tests (the `oidc-provider` package), on
// 127.0.0.1 at a free port. It prints `issuer=<url>` once listening.
//
// - Client `spanblame` (secret `spanblame-test-secret`), code flow, PKCE required, redirect
//   URI from REDIRECT_URI; client credentials for machine tokens.
// - Every interaction signs in as `login_hint` (default `alice`) and grants everything.
// - Accounts' groups: alice → payments-eng; lea → oncall-leads; root → sre-admins.
// - Access tokens for resource `urn:spanblame:api` have audience `spanblame-api`; for
//   `urn:other:api`, audience `other-api` (a token for someone else).
// - `GET /test/rogue-token?sub=…`: a well-formed ID token signed by a key the provider does
//   not publish (an attacker's), for the unknown-key test.
import http from 'node:http';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';

const GROUPS = { alice: ['payments-eng'], lea: ['oncall-leads'], root: ['sre-admins'] };
const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const rogue = (await generateKeyPair('RS256', { extractable: true })).privateKey;

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: 'spanblame', client_secret: 'spanblame-test-secret',
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code', 'client_credentials'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'email', 'profile', 'groups', 'spans:read'],
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@example.test`, email_verified: true, name: id, groups: GROUPS[id] || [] }),
  }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:spanblame:api',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'spans:read',
        audience: resource === 'urn:other:api' ? 'other-api' : 'spanblame-api',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/rogue-token') {
    const sub = ctx.query.sub || 'alice';
    ctx.body = await new SignJWT({ email: `${sub}@example.test`, groups: GROUPS[sub] || [] })
      .setProtectedHeader({ alg: 'RS256', kid: 'test-key-1' })
      .setIssuer(issuer).setAudience('spanblame').setSubject(sub)
      .setIssuedAt().setExpirationTime('10m').sign(rogue);
    return;
  }
  if (!/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: details.params.login_hint || 'alice' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    if (details.prompt.details.missingOIDCClaims) grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(details.prompt.details.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
});

server.on('request', provider.callback());
console.log(`issuer=${issuer}`);
