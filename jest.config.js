/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { target: 'ES2022', module: 'commonjs', esModuleInterop: true, strict: true, skipLibCheck: true, lib: ['ES2022', 'ESNext.AsyncIterable', 'ESNext.Disposable'] }, diagnostics: { warnOnly: false } }] },
  setupFiles: ['<rootDir>/test/utils/setup-env.ts'],
  testTimeout: 120000,
  maxWorkers: 1,
};
