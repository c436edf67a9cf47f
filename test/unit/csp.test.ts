import { describe, expect, it } from 'vitest';
import { contentSecurityPolicy, DEFAULT_MODEL_HOSTS, hostAllowed, modelHostRefusal, parseModelHosts } from '../../src/csp';

const SELF = 'https://hark.example.org';

describe('the production Content-Security-Policy (src/csp.ts)', () => {
  it('allows no inline script or eval, only wasm compilation, and connects to the site and the model hosts', () => {
    const policy = contentSecurityPolicy([...DEFAULT_MODEL_HOSTS, 'https://models.example.com']);
    expect(policy).toContain("script-src 'self' 'wasm-unsafe-eval';");
    expect(policy).not.toMatch(/unsafe-inline|'unsafe-eval'/);
    expect(policy).toContain("connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co https://models.example.com;");
    expect(policy).not.toContain('frame-ancestors'); // ignored (with a console warning) in a <meta>
    expect(contentSecurityPolicy([], { header: true })).toMatch(/frame-ancestors 'none'$/);
  });

  it('reads HARK_MODEL_HOSTS as origins and refuses anything else', () => {
    expect(parseModelHosts(undefined)).toEqual([]);
    expect(parseModelHosts(' https://a.example.com, https://*.b.example.com:8443 http://localhost:8080 ')).toEqual([
      'https://a.example.com',
      'https://*.b.example.com:8443',
      'http://localhost:8080',
    ]);
    for (const bad of ['https://a.example.com/', 'a.example.com', 'https://a.example.com/models', "'unsafe-inline'", '*']) {
      expect(() => parseModelHosts(bad), bad).toThrow(/HARK_MODEL_HOSTS/);
    }
  });

  it('matches hosts as connect-src does: scheme, port, and *. for subdomains only', () => {
    const hosts = ['https://huggingface.co', 'https://*.hf.co', 'http://localhost:8080'];
    expect(hostAllowed('https://huggingface.co/x', SELF, hosts)).toBe(true);
    expect(hostAllowed('https://cas-bridge.xethub.hf.co/y', SELF, hosts)).toBe(true);
    expect(hostAllowed('https://hf.co/y', SELF, hosts)).toBe(false);
    expect(hostAllowed('http://huggingface.co/x', SELF, hosts)).toBe(false);
    expect(hostAllowed('https://huggingface.co:444/x', SELF, hosts)).toBe(false);
    expect(hostAllowed('https://evilhuggingface.co/x', SELF, hosts)).toBe(false);
    expect(hostAllowed('http://localhost:8080/m/', SELF, hosts)).toBe(true);
    expect(hostAllowed('/models/x/', SELF, hosts)).toBe(true);
  });

  it('refuses a model address outside the policy with what to do, and allows everything where no policy applies', () => {
    const hosts = [...DEFAULT_MODEL_HOSTS];
    expect(modelHostRefusal('/models/salmonn-tiny/', SELF, hosts)).toBeNull();
    expect(modelHostRefusal('owner/salmonn-7b', SELF, hosts)).toBeNull();
    expect(modelHostRefusal('https://huggingface.co/owner/name', SELF, hosts)).toBeNull();
    expect(modelHostRefusal(`${SELF}/models/x/`, SELF, hosts)).toBeNull();
    const refusal = modelHostRefusal('https://models.example.com/x/', SELF, hosts);
    expect(refusal).toContain('may only download models from this site, huggingface.co, *.huggingface.co, *.hf.co');
    expect(refusal).toContain('https://models.example.com');
    expect(refusal).toContain('HARK_MODEL_HOSTS');
    expect(modelHostRefusal('https://models.example.com/x/', SELF, null)).toBeNull();
  });
});
