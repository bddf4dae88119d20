declare const __PEFTJS_VERSION__: string | undefined;

/** The package version, injected at build time (tsup `define`); `dev` when running from source. */
export const VERSION: string = typeof __PEFTJS_VERSION__ === 'string' ? __PEFTJS_VERSION__ : 'dev';
