"""num-sites "auto": the server counts the sites' codes at the start of a run and tells them."""

import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.site import site_config, site_info
from medgan_models.config import AUTO_SITES, ConfigError, RunConfig
from medgan_models.protocol import CONFIG, SITE_INFO
from server.federation import resolve_num_sites
from server.site_codes import count_site_codes
from server.strategy import DPGanFedAvg

CONFIG_AUTO = RunConfig(num_sites=AUTO_SITES, min_sites=2, round_timeout=5)


def test_auto_is_a_config_value_and_not_site_conditional_until_resolved():
    assert RunConfig.from_mapping({"num-sites": "auto"}).num_sites == AUTO_SITES
    assert RunConfig.from_mapping({"num-sites": "AUTO"}).num_sites == AUTO_SITES
    assert not CONFIG_AUTO.site_conditional
    with pytest.raises(ConfigError, match="num-sites must be 'auto' or >= 0"):
        RunConfig(num_sites=-2).validate()
    with pytest.raises(ConfigError, match="num-sites"):
        RunConfig.from_mapping({"num-sites": "many"})


def test_a_site_takes_the_servers_count_and_checks_its_code_against_it():
    run = CONFIG_AUTO.to_mapping()
    config, site = site_config(run, {"partition-id": 2, "num-partitions": 3}, num_sites=3)
    assert config.num_sites == 3 and site.site_code(config) == 2
    with pytest.raises(ConfigError, match=r"site code 2 .* is not in \[0, 2\)"):
        site_config(run, {"partition-id": 2, "num-partitions": 3}, num_sites=2)
    # a fixed num-sites is not overridden by what a message says
    fixed, _ = site_config(RunConfig(num_sites=0).to_mapping(), {}, num_sites=3)
    assert fixed.num_sites == 0


def _info(node_config: dict) -> dict:
    return site_info(site_config(CONFIG_AUTO.to_mapping(), node_config)[1])


def test_the_count_is_one_code_per_site_when_every_site_has_one():
    partitions = [_info({"partition-id": i, "num-partitions": 3}) for i in range(3)]
    assert count_site_codes(partitions, ["a", "b", "c"])[0] == 3
    # hospitals with their own data and explicit codes (3 of them connected, codes up to 4)
    coded = [_info({"site-code": c, "data-dir": "/data"}) for c in (0, 4, 1)]
    assert count_site_codes(coded, ["a", "b", "c"]) == (
        5, "num-sites auto: 5 (a generator code per site)")


def test_the_count_is_off_when_a_site_has_no_code_and_names_it():
    infos = [_info({"site-code": 0}), _info({"data-dir": "/data/pacs"})]
    count, line = count_site_codes(infos, ["st-marys", "st-johns"])
    assert count == 0 and "st-johns set no site-code or partition-id" in line
    assert "st-marys" not in line
    assert count_site_codes([_info({"partition-id": 0})], ["a"])[0] == 0
    assert count_site_codes([], []) == (0, "num-sites auto: off (no site answered)")


class InfoGrid:
    """Connected sites that answer the server's site-info question from their node configs."""

    def __init__(self, node_configs: dict[int, dict]) -> None:
        self.node_configs = node_configs
        self.asked: list[str] = []

    def get_node_ids(self):
        return list(self.node_configs)

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for message in messages:
            self.asked.append(str(message.content[CONFIG]["task"]))
            _, site = site_config(CONFIG_AUTO.to_mapping(),
                                  self.node_configs[message.metadata.dst_node_id])
            replies.append(Message(RecordDict({
                "metrics": MetricRecord(site_info(site)),
                "site": ConfigRecord({"site-id": site.site_id, "status": "evaluated"})}),
                reply_to=message))
        return replies


@pytest.fixture
def as_server_app(monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # messages are made inside a ServerApp
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def test_the_server_asks_the_connected_sites_and_says_what_it_decided(as_server_app):
    grid = InfoGrid({11: {"partition-id": 0, "num-partitions": 2},
                     12: {"partition-id": 1, "num-partitions": 2}})
    lines: list[str] = []
    config = resolve_num_sites(CONFIG_AUTO, grid, DPGanFedAvg(2), lines.append)
    assert config.num_sites == 2 and grid.asked == [SITE_INFO, SITE_INFO]
    assert lines == ["num-sites auto: 2 (a generator code per site)"]
    grid = InfoGrid({11: {"site-name": "st-marys", "data-dir": "/a"},
                     12: {"site-name": "st-johns", "data-dir": "/b"}})
    assert resolve_num_sites(CONFIG_AUTO, grid, DPGanFedAvg(2), lines.append).num_sites == 0
    assert "st-marys, st-johns set no site-code" in lines[-1]
    # a fixed value is kept and nobody is asked
    grid = InfoGrid({})
    assert resolve_num_sites(RunConfig(num_sites=3), grid, DPGanFedAvg(2), print).num_sites == 3
    assert grid.asked == []
