"""Settings that reach faust's own configuration unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.config.settings import Settings
from streams.runtime.app import create_app


def test_the_commit_interval_is_faust_s(tmp_path: Path) -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        default = create_app(Settings(data_dir=tmp_path))
        longer = create_app(Settings.from_env({"ENGINESTREAM_COMMIT_INTERVAL": "30",
                                               "ENGINESTREAM_DATA_DIR": str(tmp_path)}))
        assert default.conf.broker_commit_interval == Settings().commit_interval_s == 2.8
        assert longer.conf.broker_commit_interval == 30.0
    finally:
        asyncio.get_event_loop().close()
        asyncio.set_event_loop(None)
