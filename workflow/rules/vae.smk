# The VAE beside the CNN: training, the comparison with the CNN, its figures and the novelty benchmark.


rule train_vae:
    input:
        "results/{dataset}/sticks.parquet",
    output:
        model=directory("results/{dataset}/vae/model"),
        history="results/{dataset}/vae/history.csv",
    log:
        "results/{dataset}/logs/train_vae.log",
    benchmark:
        "results/{dataset}/benchmarks/train_vae.tsv"
    conda:
        ENV
    # Uses every core it is given (Snakemake scales 64 down to --cores).
    threads: 64
    resources:
        gpu=1,
    params:
        instrument=config["instrument"],
        augment=config["augment"],
        model=config["vae"]["model"],
        train=config["vae"]["train"],
        # Per-epoch state for resuming a killed run (kept outside the outputs on purpose).
        resume_dir=lambda wc: f"results/{wc.dataset}/vae/resume",
    script:
        "../scripts/train_vae.py"


rule compare_cnn_vae:
    input:
        unpack(get_comparison_inputs),
        unpack(get_measured_inputs),
        vae="results/{dataset}/vae/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        json="results/{dataset}/vae/comparison.json",
        csv="results/{dataset}/vae/comparison.csv",
        markdown="results/{dataset}/vae/comparison.md",
        html=report(
            "results/{dataset}/vae/comparison.html",
            caption="../report/vae_comparison.rst",
            category="VAE",
        ),
        figure=report(
            "results/{dataset}/plots/vae_comparison.png",
            caption="../report/vae_comparison.rst",
            category="VAE",
        ),
    log:
        "results/{dataset}/logs/compare_cnn_vae.log",
    benchmark:
        "results/{dataset}/benchmarks/compare_cnn_vae.tsv"
    conda:
        ENV
    threads: 64
    params:
        cnn=lambda wc, input: input.get("cnn", "pretrained"),
        measured=config["measured"]["sets"],
        prototypes=config["vae"]["prototypes"],
        draws=config["vae"]["prototype_draws"],
        seed=config["evaluate"]["seed"],
    script:
        "../scripts/compare_cnn_vae.py"


rule plot_vae:
    input:
        unpack(get_measured_inputs),
        vae="results/{dataset}/vae/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        latent_map=report(
            "results/{dataset}/plots/vae_latent_map.png",
            caption="../report/vae_latent_map.rst",
            category="VAE",
        ),
        reconstructions=report(
            "results/{dataset}/plots/vae_reconstructions.png",
            caption="../report/vae_reconstructions.rst",
            category="VAE",
        ),
    log:
        "results/{dataset}/logs/plot_vae.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_vae.tsv"
    conda:
        ENV
    params:
        measured=config["measured"]["sets"],
    script:
        "../scripts/plot_vae.py"


rule evaluate_novelty:
    input:
        unpack(get_novelty_inputs),
        unpack(get_measured_inputs),
        vae="results/{dataset}/vae/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        json="results/{dataset}/vae/novelty.json",
        markdown="results/{dataset}/vae/novelty.md",
        html=report(
            "results/{dataset}/vae/novelty.html",
            caption="../report/vae_novelty.rst",
            category="VAE",
        ),
    log:
        "results/{dataset}/logs/evaluate_novelty.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate_novelty.tsv"
    conda:
        ENV
    threads: 64
    params:
        cnn=lambda wc, input: input.get("cnn", "pretrained"),
        measured=config["measured"]["sets"],
        n=config["vae"]["novelty_patterns"],
    script:
        "../scripts/evaluate_novelty.py"


rule all_vae:
    # The VAE's outputs alone, e.g. with config/vae.yaml (whose CNN is the shipped one).
    input:
        get_vae_outputs(),
