// Bundled for the browser with esbuild (platform browser): everything the package exports.
export * from '@creditgate/client';
