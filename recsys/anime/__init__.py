"""anime domain: data prep, training, serving, experiments, CLI and page helpers, one module each."""
