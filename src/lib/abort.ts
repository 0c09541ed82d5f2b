/**
 * Calls `listener` with the signal's reason once it is aborted (at once if it already is); returns what stops it.
 * The shape in which a stream's sink reports that its reader is gone (StreamSink.onAbort).
 */
export function whenAborted(signal: AbortSignal, listener: (reason: unknown) => void): () => void {
  const onAbort = () => listener(signal.reason);
  if (signal.aborted) {
    onAbort();
    return () => undefined;
  }
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}
