"""What a failing site tells the server."""

from client.app import error_summary
from client.data import DataError
from medgan_models.config import ConfigError


def test_data_errors_do_not_leak_file_names():
    error = DataError("/pacs/DOE^JOHN_1970-01-01/img001.dcm: truncated file")
    summary = error_summary("site-2", error)
    assert "DOE" in str(error) and "DOE" not in summary and "pacs" not in summary
    assert summary.startswith("site-2: DataError")


def test_config_errors_are_reported_in_full():
    summary = error_summary("site-0", ConfigError("unknown node-config key(s) ['dta']"))
    assert summary == "site-0: unknown node-config key(s) ['dta']"
