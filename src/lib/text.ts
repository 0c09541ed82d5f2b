/** Text PostgreSQL can store: NUL and unpaired surrogates (which text and jsonb reject) become U+FFFD. */
export function storableText(text: string): string {
  return text.replaceAll('\u0000', '\uFFFD').toWellFormed();
}
