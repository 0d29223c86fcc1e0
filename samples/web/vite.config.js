import { defineConfig } from 'vite';

export default defineConfig({
  // Relative asset URLs: the built page works from any folder or static server.
  base: './',
  server: { host: '127.0.0.1', port: 5173 },
  preview: { host: '127.0.0.1', port: 4173 },
});
