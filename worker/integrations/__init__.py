"""Outside systems the engine reports to: MLflow, where flagged model versions are tagged."""
