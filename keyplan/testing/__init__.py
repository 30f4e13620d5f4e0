"""Conformance suites that every provider and key source must pass, shipped with keyplan so a
plugin that lives in its own package can run them too (as `keyring.testing` does for keyring
backends). They need pytest.

- `keyplan.testing.providers.ProviderConformance`: subclass it in a test module (`Test...`), set
  `algorithms` and `rotates`, and override the `harness` fixture to yield a `ProviderHarness`:
  the plugin, its settings, a provider opened with `conformance_context` (its limiters wait in
  virtual time), and the control URL of an emulator of the cloud
  that speaks keyplan's emulator control protocol (see the module's docstring).
- `keyplan.testing.sources.KeySourceConformance`: subclass it and override the class-scoped
  `source` fixture to yield an opened `KeySource`.
- `keyplan.testing.state_suite.StateBackendConformance`: subclass it and override the `harness`
  fixture to yield a `BackendHarness` (backend kind, settings, working directory, environment)
  for an empty store; every state backend passes it with the same test code.

For example::

    from keyplan.testing.providers import ProviderConformance, ProviderHarness

    class TestVaultTransit(ProviderConformance):
        algorithms = ("AES_256",)
        rotates = ("AES_256",)

        @pytest.fixture
        def harness(self, tmp_path): ...
"""
