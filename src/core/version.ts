/** The package version, put in at build time (scripts/build.mjs, vite.config.ts). */
declare const RTCMESH_VERSION: string;
export const VERSION: string = typeof RTCMESH_VERSION === 'string' ? RTCMESH_VERSION : '0.0.0-dev';
