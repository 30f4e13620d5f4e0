"""The one door through which apply calls plugins.

Every provider call a handler makes goes through `PluginCalls.provider`, and every key-source
call through `PluginCalls.source`: the operation is named by the contract's own method
(`Provider.create_key`, `KeySource.wrap`), so this is the single place where calls are admitted
(each provider's `max_concurrency`), retried (`RetryPolicy`, for errors the plugin classified as
retryable) and checked: an answer that is not the contract's response model is a
`PluginAnswerError` naming the plugin, never an `AssertionError` deep in keyplan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from keyplan.apply.hooks import ApplyHooks
from keyplan.apply.retry import RetryPolicy
from keyplan.plan.model import Action
from keyplan.provider import KeySource, Provider, ProviderError, SourceError, checked_answer
from keyplan.runtime import Session

Request = TypeVar("Request")
Response = TypeVar("Response")
P = TypeVar("P", Provider, KeySource)


class PluginCalls:
    def __init__(self, session: Session, hooks: ApplyHooks, retry: RetryPolicy) -> None:
        self.session = session
        self.hooks = hooks
        self.retry = retry
        self._admission: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def provider(
        self,
        action: Action,
        target: str,
        operation: Callable[[Provider, Request], Response],
        request: Request,
    ) -> Response:
        """`operation(provider, request)` on the provider at `target`, admitted, retried and checked."""
        provider = self.session.provider(target)
        admission = self._admission_for(target)

        def call() -> Response:
            with admission:
                return _bound(provider, operation)(request)

        return checked_answer(target, operation, self._with_retries(action, call))

    def source(
        self,
        action: Action,
        source: str,
        operation: Callable[[KeySource, Request], Response],
        request: Request,
    ) -> Response:
        """`operation(source, request)` on the key source at `source`, retried and checked."""
        opened = self.session.source(source)
        return checked_answer(source, operation, self._with_retries(action, lambda: _bound(opened, operation)(request)))

    def admitted(self, target: str) -> threading.Semaphore:
        """The admission of `target`'s provider, for calls made outside `provider` (proofs, which
        hand the provider a witness besides the request): hold it while calling."""
        return self._admission_for(target)

    def _admission_for(self, target: str) -> threading.Semaphore:
        with self._lock:
            if target not in self._admission:
                _, settings = self.session.provider_plugin(target)
                self._admission[target] = threading.Semaphore(settings.max_concurrency)
            return self._admission[target]

    def _with_retries(self, action: Action, call: Callable[[], Response]) -> Response:
        failures = 0
        while True:
            try:
                return call()
            except (ProviderError, SourceError) as exc:
                failures += 1
                if not exc.retryable or not self.retry.allows(failures):
                    raise
                delay = self.retry.delay(failures - 1)
                self.hooks.retrying(action, failures, delay, exc.summary)
                time.sleep(delay)


def _bound(plugin: P, operation: Callable[[P, Request], Response]) -> Callable[[Request], Response]:
    """The plugin's own implementation of a contract operation (the contract's method is abstract)."""
    method: Callable[[Request], Response] = getattr(plugin, operation.__name__)
    return method
