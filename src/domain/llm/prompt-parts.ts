/**
 * The parts of a prompt whose tokens its text decides, and the ones it does not: an image, audio or file part is
 * sent as base64 whose length says nothing of what the model counts for it. The reservation's bound and the
 * estimate of a call without usage both count such a part as NON_TEXT_PART_TOKENS, so the estimate never exceeds
 * what was reserved.
 */
export const NON_TEXT_PART_TOKENS = 2_500;

const TEXT_PART_TYPES = new Set(['text', 'input_text', 'output_text', 'refusal']);

/** The messages with only their text parts, and how many other parts were taken out. */
export function withoutNonTextParts(messages: unknown[]): { messages: unknown[]; nonTextParts: number } {
  let nonTextParts = 0;
  const textOnly = messages.map((message) => {
    const content = (message as { content?: unknown }).content;
    if (!Array.isArray(content)) return message;
    const text = content.filter((part) => TEXT_PART_TYPES.has((part as { type?: string }).type ?? '') || (nonTextParts++, false));
    return { ...(message as object), content: text };
  });
  return { messages: textOnly, nonTextParts };
}
