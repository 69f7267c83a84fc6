"""Site-conditional generator: one learned code per site, owned and trained by that site."""

import json

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.data import SiteData
from client.dp_training import train_locally
from client.site import site_config
from client.training_round import train_round
from medgan_models.config import AUTO_SITES, ConfigError, RunConfig
from medgan_models.networks import build_models
from medgan_models.protocol import CLASS_EXAMPLES, SITE_CODE, class_examples, class_examples_metrics
from medgan_models.sampling import sample_images
from medgan_models.weights import load_pair_state, pair_state
from server.checkpoint import load_checkpoint
from server.federation import resolve_num_sites, run_federation
from server.reply_validation import SiteReply
from server.site_codes import (EMBEDDING_KEY, EXAMPLES_KEY, SiteCodeConflict, take_site_rows,
                               upgrade_site_examples)
from simulation.cli import main
from simulation.evaluate import evaluate_run
from simulation.generate import generate

CONFIG = RunConfig(image_size=16, num_sites=3, batch_size=8, local_steps=2, latent_dim=16,
                   base_channels=8, grad_sample_mode="hooks", mean_embedding=0.0)


def site_data(n: int = 32, seed: int = 0) -> SiteData:
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, 1, 16, 16)).astype(np.float32)
    return SiteData(images, rng.integers(0, 2, n).astype(np.int64), 2, ["a", "b"], "test")


def test_each_site_code_draws_its_own_images_and_the_mix_follows_site_sizes():
    generator, _ = build_models(CONFIG)
    generator.eval()
    z, labels = torch.randn(4, 16), torch.zeros(4, dtype=torch.long)
    by_site = [generator(z, labels, torch.full((4,), s)) for s in range(3)]
    assert not torch.allclose(by_site[0], by_site[1])
    assert generator.site_examples.shape == (3, 2)  # sites x classes
    generator.site_examples.copy_(torch.tensor([[0.0, 0.0], [30.0, 20.0], [0.0, 0.0]]))
    assert generator.draw_sites(200).eq(1).all()  # only site 1 trained
    torch.testing.assert_close(generator(z, labels), by_site[1])  # no sites given: the mix
    generator.site_examples.copy_(torch.tensor([[50.0, 50.0], [150.0, 150.0], [0.0, 0.0]]))
    drawn = torch.bincount(generator.draw_sites(4000), minlength=3).float() / 4000
    assert drawn[2] == 0 and abs(drawn[1] - 0.75) < 0.03
    # the same seed gives the same images, sites included
    a = sample_images(generator, torch.zeros(20, dtype=torch.long), 20, seed=3)
    torch.testing.assert_close(a, sample_images(generator, torch.zeros(20, dtype=torch.long),
                                                20, seed=3))
    assert "site_examples" in generator.state_dict()


def test_each_images_site_is_drawn_from_the_sites_images_of_its_class():
    generator, _ = build_models(CONFIG)
    # site 2 holds no image of class 1, site 0 none of class 0
    generator.site_examples.copy_(torch.tensor([[0.0, 100.0], [100.0, 100.0], [300.0, 0.0]]))
    labels = torch.tensor([0, 1]).repeat(3000)
    sites = generator.draw_sites(len(labels), labels)
    class0, class1 = sites[labels == 0], sites[labels == 1]
    assert not class0.eq(0).any() and not class1.eq(2).any()
    assert abs(class0.eq(2).float().mean() - 0.75) < 0.03
    assert abs(class1.eq(1).float().mean() - 0.5) < 0.04
    # a class no site reported any image of: drawn by the sites' sizes
    generator.site_examples.copy_(torch.tensor([[0.0, 0.0], [100.0, 0.0], [300.0, 0.0]]))
    drawn = generator.draw_sites(4000, torch.ones(4000, dtype=torch.long))
    assert not drawn.eq(0).any() and abs(drawn.eq(2).float().mean() - 0.75) < 0.03


def test_an_older_checkpoint_with_one_size_per_site_loads_spread_over_the_classes():
    generator, discriminator = build_models(CONFIG)
    state = pair_state(generator, discriminator)
    state[EXAMPLES_KEY] = torch.tensor([100.0, 300.0, 0.0])  # before sizes per class
    fresh, _ = build_models(CONFIG)
    load_pair_state(fresh, build_models(CONFIG)[1], state)
    torch.testing.assert_close(fresh.site_examples,
                               torch.tensor([[50.0, 50.0], [150.0, 150.0], [0.0, 0.0]]))
    upgraded = upgrade_site_examples(state, 2)  # a resumed run's weights
    torch.testing.assert_close(upgraded[EXAMPLES_KEY], fresh.site_examples)
    assert upgrade_site_examples(upgraded, 2) is upgraded


def test_unconditional_run_has_no_site_code():
    generator, _ = build_models(CONFIG.replace(num_sites=0))
    assert generator.site_embedding is None and "site_examples" not in generator.state_dict()


def test_a_round_trains_and_reports_the_node_configs_site_code(tmp_path):
    run = {**CONFIG.to_mapping(), "out-dir": str(tmp_path)}
    config, site = site_config(run, {"partition-id": 0, "num-partitions": 1, "site-code": 2})
    weights = pair_state(*build_models(config))
    outcome = train_round(weights, 1, config, site, site_data())
    assert outcome.metrics[SITE_CODE] == 2
    moved = (outcome.weights[EMBEDDING_KEY] - weights[EMBEDDING_KEY]).abs().sum(dim=1)
    assert moved[2] > 0 and moved[0] == 0 and moved[1] == 0
    assert not any(k.startswith(CLASS_EXAMPLES) for k in outcome.metrics)  # no release


def test_a_site_with_a_mean_embedding_reports_its_releases_class_counts(tmp_path):
    # a release with next to no noise (and a budget to match), so its counts are the true ones
    run = {**CONFIG.to_mapping(), "out-dir": str(tmp_path), "mean-embedding": 10.0,
           "mean-embedding-noise": 0.05, "mean-embedding-features": 64, "accountant": "rdp",
           "noise-multiplier": 1.0, "max-epsilon": 1e6}
    config, site = site_config(run, {"partition-id": 1, "num-partitions": 3})
    data = site_data(40)
    outcome = train_round(pair_state(*build_models(config)), 1, config, site, data)
    reported = class_examples(outcome.metrics, 2)
    np.testing.assert_allclose(reported, np.bincount(data.labels, minlength=2), atol=0.5)


def test_a_site_trains_only_its_own_code():
    generator, discriminator = build_models(CONFIG)
    before = generator.site_embedding.weight.detach().clone()
    train_locally(generator, discriminator, site_data(), CONFIG, 1.0, torch.device("cpu"),
                  seed=0, site_code=1)
    after = generator.site_embedding.weight.detach()
    assert not torch.allclose(after[1], before[1])
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    with pytest.raises(ValueError, match="site-conditional .3 sites.: pass the site's code"):
        train_locally(*build_models(CONFIG), site_data(), CONFIG, 1.0, torch.device("cpu"),
                      seed=0)


def test_a_site_code_beyond_num_sites_is_a_config_error():
    with pytest.raises(ConfigError, match=r"site code 3 \(node-config site-code, else "
                                          r"partition-id\) is not in \[0, 3\)"):
        site_config(CONFIG.to_mapping(), {"partition-id": 3, "num-partitions": 4})
    _, site = site_config(CONFIG.to_mapping(), {"partition-id": 2, "num-partitions": 3})
    assert site.site_code(CONFIG) == 2 and site.site_code(CONFIG.replace(num_sites=0)) is None
    # a hospital with its own data folder takes no partition, only a code
    _, site = site_config(CONFIG.to_mapping(), {"site-code": 1, "data-dir": "/data/own"})
    assert site.site_code(CONFIG) == 1 and site.num_partitions == 1
    with pytest.raises(ConfigError, match="num-sites must be 'auto' or >= 0"):
        CONFIG.replace(num_sites=-2)


def _reply(site: int, code: int | None, examples: int, state: dict,
           per_class: list[float] | None = None) -> SiteReply:
    metrics = {"num-examples": examples, "epsilon": 1.0,
               **(class_examples_metrics(np.array(per_class)) if per_class else {})}
    if code is not None:
        metrics[SITE_CODE] = code
    return SiteReply(site, f"site-{site}", "trained", "", metrics,
                     {k: v.numpy() for k, v in state.items()})


def test_server_takes_each_code_from_its_owner_and_records_its_images_per_class():
    generator, discriminator = build_models(CONFIG)
    reference = pair_state(generator, discriminator)
    sent = []
    for code in (0, 2):  # site 1 did not train this round
        moved = {k: v.clone() for k, v in reference.items()}
        moved[EMBEDDING_KEY][code] += 1.0 + code
        sent.append(moved)
    # what FedAvg made of it: each owned row moved by only its site's share
    aggregate = ArrayRecord({k: Array(((sent[0][k] + sent[1][k]) / 2).numpy())
                             for k in reference})
    # site 0 reports no class counts (no mean embedding), site 2 its noisy ones
    replies = [_reply(7, 0, 100, sent[0]), _reply(9, 2, 300, sent[1], [302.5, -1.5])]
    merged = take_site_rows(aggregate, replies, 3, generator.site_owned())
    embedding = merged[EMBEDDING_KEY].numpy()
    np.testing.assert_allclose(embedding[0], reference[EMBEDDING_KEY][0].numpy() + 1.0)
    np.testing.assert_allclose(embedding[2], reference[EMBEDDING_KEY][2].numpy() + 3.0)
    np.testing.assert_allclose(embedding[1], reference[EMBEDDING_KEY][1].numpy())
    np.testing.assert_array_equal(merged[EXAMPLES_KEY].numpy(), [[50, 50], [0, 0], [302.5, 0]])
    assert list(merged.keys()) == list(aggregate.keys())


@pytest.mark.parametrize("codes,match", [
    ((0, 0), "site-1 and site-2 both have site code 0: give each site its own site-code"),
    ((0, None), "site-2 sent no site code"),
    ((0, 3), r"site-2: site code 3 is not in \[0, 3\)"),
])
def test_conflicting_or_missing_site_codes_name_the_sites(codes, match):
    generator, discriminator = build_models(CONFIG)
    state = pair_state(generator, discriminator)
    aggregate = ArrayRecord({k: Array(v.numpy()) for k, v in state.items()})
    replies = [_reply(i + 1, code, 10, state) for i, code in enumerate(codes)]
    with pytest.raises(SiteCodeConflict, match=match):
        take_site_rows(aggregate, replies, 3, generator.site_owned())


@pytest.fixture(scope="module")
def site_conditional_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("site-codes") / "run"
    config = out.parent / "run.toml"
    config.write_text("num-sites = \"auto\"\nsite-output-layer = true\nsite-batchnorm = true\n"
                      "class-batchnorm = true\neval-samples = 40\n"
                      "tstr-steps = 10\nholdout-fraction = 0.2\n")
    assert main(["simulate", "--sites", "2", "--image-size", "16", "--local-steps", "3",
                 "--batch-size", "16", "--samples-per-site", "64", "--seed", "1",
                 "--device", "cpu", "--rounds", "1", "--accountant", "rdp", "--out", str(out),
                 "--config", str(config)]) == 0
    return out


def test_a_site_conditional_run_records_site_sizes_and_generates_each_sites_look(
        site_conditional_run, tmp_path):
    run = site_conditional_run
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    sizes = [record["clients"][f"site-{i}"]["num_examples"] for i in range(2)]
    checkpoint = load_checkpoint(run / "checkpoints" / "round_001.pt")
    weights = checkpoint.weights
    assert checkpoint.run_config["num-sites"] == 2  # "auto": one code per virtual hospital
    assert weights["generator.site_output.1.weight"].shape[0] == 2  # a last block per site
    # BatchNorm statistics per site (site-batchnorm), each trained at its site, and a scale
    # per site and class (class-batchnorm)
    running = weights["generator.project.2.running_mean"]
    assert running.shape[0] == 2 and (running != 0).all(dim=1).all()
    assert weights["generator.project.2.weight"].shape[:2] == (2, 2)
    # the noisy class counts of each site's mean-embedding release (noise sd ~7 per class)
    np.testing.assert_allclose(weights[EXAMPLES_KEY].numpy().sum(axis=1), sizes, atol=50)
    assert set(record["metrics"]["sites"]) == {"site-0", "site-1"}
    # `medgan evaluate` asks each site's own code, as the run's evaluation did
    assert evaluate_run(run)["metrics"]["sites"] == record["metrics"]["sites"]
    assert main(["generate", "--run", str(run), "--n", "4", "--site", "1",
                 "--out", str(tmp_path / "png")]) == 0
    assert all(f.name.endswith("_site1.png") for f in (tmp_path / "png").glob("*.png"))
    assert main(["generate", "--run", str(run), "--n", "200", "--out",
                 str(tmp_path / "mix.npz")]) == 0
    assert set(np.load(tmp_path / "mix.npz")["sites"]) == {0, 1}
    with pytest.raises(ValueError, match=r"--site 2 is not in \[0, 2\)"):
        generate(run, 1, tmp_path / "x", site=2)


class EchoGrid:
    """A grid whose sites all train, send back the weights unchanged, and claim one site code."""

    def __init__(self, nodes: list[int], code: int) -> None:
        self.nodes, self.code = nodes, code

    def get_node_ids(self):
        return self.nodes

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            content = RecordDict({
                "site": ConfigRecord({"site-id": f"site-{node}", "status": "trained",
                                      "message": ""}),
                "metrics": MetricRecord({"num-examples": 10, "epsilon": 1.0, "delta": 1e-5,
                                         SITE_CODE: self.code}),
                "arrays": message.content["arrays"]})
            replies.append(Message(content, reply_to=message))
        return replies


def test_two_sites_with_one_code_stop_the_run_with_both_names(tmp_path, monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # as inside a running ServerApp
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    config = CONFIG.replace(num_rounds=2, eval_every=0, num_sites=2)
    lines: list[str] = []
    summary = run_federation(EchoGrid([5, 6], code=1), config, tmp_path, progress=lines.append)
    assert summary["stopped"] == ("stopped at round 1: site-5 and site-6 both have site code 1: "
                                  "give each site its own site-code")
    assert lines[-1] == summary["stopped"]
    assert json.loads((tmp_path / "summary.json").read_text())["stopped"] == summary["stopped"]
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # the conflicting round is not kept


def test_a_resumed_auto_run_keeps_the_count_it_started_with(site_conditional_run):
    config = RunConfig(num_sites=AUTO_SITES, resume=str(site_conditional_run))
    # nobody is asked: the run's own checkpoint holds its count
    assert resolve_num_sites(config, grid=None, strategy=None, progress=print).num_sites == 2
