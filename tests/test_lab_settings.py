"""The project's own JupyterLab settings (.jupyter/labconfig), read by `make lab` and `make lab-course`."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = ROOT / ".jupyter" / "labconfig" / "default_setting_overrides.json"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def test_no_jupyter_news_popup_and_no_update_check():
    settings = json.loads(OVERRIDES.read_text())[NOTIFICATION]
    assert settings == {"fetchNews": "false", "checkForUpdates": False}  # no popup, no request to a website
    import sys

    schemas = Path(sys.prefix, "share", "jupyter", "lab", "schemas", "@jupyterlab", "apputils-extension")
    schema = json.loads((schemas / "notification.json").read_text())["properties"]
    assert {"const": "false", "title": "Never"} in schema["fetchNews"]["oneOf"]  # a value this Lab knows
    assert schema["checkForUpdates"]["type"] == "boolean"
