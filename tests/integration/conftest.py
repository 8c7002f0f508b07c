"""Shared parts of the integration tests: one broker per session, a simulated fleet, a model."""

from __future__ import annotations

import pytest

from detector.broker import EmbeddedBroker
from detector.checkpoint import save_checkpoint
from detector.training import TrainConfig, train
from simulators import simulate_sensors
from tests.integration.kafka_helpers import FLEET


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def sim():
    return simulate_sensors(FLEET)


@pytest.fixture(scope="session")
def model(tmp_path_factory, sim):
    cfg = TrainConfig(timesteps=16, hidden=16, epochs=3, device="cpu", val_fraction=0.3)
    result = train(list(sim.series), cfg)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", result.to_checkpoint())
