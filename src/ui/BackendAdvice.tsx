/**
 * The hint shown where the backend in use is clearly the slower one on this device (e.g. WebGPU
 * chosen in Settings on a software adapter). It is announced once by the model store when the
 * model becomes ready, so here it is a plain note, not a live region.
 */
export function BackendAdvice({ advice, testId }: { advice: string | null; testId: string }) {
  if (!advice) return null;
  return (
    <p className="advice small" role="note" data-testid={testId}>
      <strong>Faster here:</strong> {advice}
    </p>
  );
}
