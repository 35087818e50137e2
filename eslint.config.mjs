// ESLint: the recommended JavaScript and typescript-eslint rules, and a few of our own, each with its
// reason. Formatting is Prettier's job (.prettierrc.json), so no stylistic rule is enabled here.
// `any` stays an error: a patch types its target with `import type` from the library (or its @types),
// and a wrapper that forwards arguments it does not read uses `unknown[]` or a generic function type.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/node_modules/', 'test/artifacts/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    // A disable comment that no longer disables anything is an error, so none outlives its reason.
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Wrappers forward `arguments` and `this` as they came: that is the point of a wrapper.
      'prefer-rest-params': 'off',
      // `_name` marks a parameter a signature needs but the body does not; `const { a, ...rest } = o`
      // is how a test drops fields; a caught error is often of no interest (`catch {}` says so too).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true, caughtErrors: 'none' },
      ],
    },
  },
  {
    // The agent loads its parts with a lazy `require()` on purpose: start-up cost is paid only for what
    // the app uses (each place says so in a comment). Compiled to CommonJS, these are plain requires.
    files: ['src/**', 'patches/**'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The apps the benchmarks and the demo start are CommonJS, as a user's app started with
    // `node -r hatch-agent app.js` is: require is their module system.
    files: ['bench/**/*.js', 'demo/**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The transparency test's app is CommonJS on purpose: it is started with `node -r hatch-agent`
    // as a user's CommonJS app is, and require is its module system.
    files: ['test/**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Test, benchmark and demo tools clean up on a best-effort basis (kill a process that may be gone,
    // remove a file that may be removed): an empty catch there means exactly that. The agent's own
    // code keeps the rule: where it swallows an error, a comment says why.
    files: ['test/**', 'bench/**', 'demo/**'],
    rules: { 'no-empty': ['error', { allowEmptyCatch: true }] },
  },
);
