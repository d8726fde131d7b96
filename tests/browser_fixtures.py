"""The pytest fixtures every browser test module uses: import them into the module
(``from .browser_fixtures import browser_context, page``) and pytest finds them there."""

from __future__ import annotations

import pytest

from .browser_support import chromium, watched_page


@pytest.fixture(scope="module")
def browser_context():
    """One headless Chromium context per test module."""
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser_context):
    """A fresh page that records page errors, console errors, dialogs and ``window.__pwned`` (none may happen)."""
    with watched_page(browser_context) as page:
        yield page
