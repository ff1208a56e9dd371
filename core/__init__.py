"""The library every layer uses: config, paths, tracking, training, generation, models, dvc."""
