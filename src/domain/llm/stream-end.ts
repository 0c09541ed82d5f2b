import { errorFrameBody, type StreamFormat } from '../../sse/formats.js';
import type { StreamSink } from '../../sse/sink.js';
import type { UpstreamError } from '../../upstream/client.js';

/** A streamed call after its relay, its record and (for a one-shot) its job's settlement. */
export interface StreamedCall {
  jobId: string;
  callId: string;
  /** Why the stream stopped early, told in-band. */
  error: UpstreamError | null;
  /** false: the database did not take the record yet (it is retried in the background). */
  recorded: boolean;
}

const RECORDING_DEFERRED = errorFrameBody('recording_deferred', 'the call could not be recorded yet; it will be once the database answers', 'api_error');

const ignore = () => undefined;

/**
 * Ends a stream whose call is recorded: the reason it stopped early if it did (and that its record is late, if
 * it is), then the format's end ([DONE]). A client that saw [DONE] can read the charge.
 */
export async function endStream(sink: StreamSink, format: StreamFormat, call: Pick<StreamedCall, 'error' | 'recorded'>): Promise<void> {
  if (!sink.closed && call.error) await sink.write(format.error(errorFrameBody(call.error.code, call.error.message)))?.catch(ignore);
  if (!sink.closed && !call.recorded) await sink.write(format.error(RECORDING_DEFERRED))?.catch(ignore);
  if (!sink.closed) await sink.write(format.done())?.catch(ignore);
  sink.end();
}
