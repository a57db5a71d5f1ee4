rule train_cnn:
    input:
        "results/{dataset}/sticks.parquet",
    output:
        model=directory("results/{dataset}/train/model"),
        history="results/{dataset}/train/history.csv",
    log:
        "results/{dataset}/logs/train_cnn.log",
    benchmark:
        "results/{dataset}/benchmarks/train_cnn.tsv"
    conda:
        ENV
    # Uses every core it is given (Snakemake scales 64 down to --cores).
    threads: 64
    resources:
        gpu=1,
    params:
        instrument=config["instrument"],
        augment=config["augment"],
        model=config["model"],
        train=config["train"],
        # The starting checkpoint's digest (train.init_from): a changed one re-runs training. Not an
        # input, since it may come from another config's run (which this config must not rebuild).
        init=init_digest(config["train"].get("init_from")),
        # Per-epoch state for resuming a killed run (kept outside the outputs on purpose).
        resume_dir=lambda wc: f"results/{wc.dataset}/train/resume",
    script:
        "../scripts/train_cnn.py"


rule fit_mixture_probe:
    input:
        model="results/{dataset}/train/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        "results/{dataset}/train/mixture_probe.json",
    log:
        "results/{dataset}/logs/fit_mixture_probe.log",
    benchmark:
        "results/{dataset}/benchmarks/fit_mixture_probe.tsv"
    conda:
        ENV
    threads: 64
    params:
        patterns=config["mixture_probe"]["patterns"],
    script:
        "../scripts/fit_mixture_probe.py"


rule train_mixture_detector:
    input:
        unpack(get_mixture_detector_inputs),
        model="results/{dataset}/train/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        "results/{dataset}/train/mixture_detector.pt",
    log:
        "results/{dataset}/logs/train_mixture_detector.log",
    benchmark:
        "results/{dataset}/benchmarks/train_mixture_detector.tsv"
    conda:
        ENV
    threads: 64
    resources:
        gpu=1,
    params:
        train=config["mixture_detector"]["train"],
        # The starting detector's digest (mixture_detector.train.init_from): a changed file re-runs the rule.
        # Not an input, since it may come from another config's run (which this config must not rebuild).
        init=file_digest(config["mixture_detector"]["train"]["init_from"]),
        probe=lambda wc, input: input.get("probe"),
    script:
        "../scripts/train_mixture_detector.py"
