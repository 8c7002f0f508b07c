"""detector: streaming LSTM anomaly detection for sensor fleets and camera networks."""

__version__ = "0.1.0"
