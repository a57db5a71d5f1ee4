# Synthetic vs. experimental: the trained model on folders of measured (or McXtrace) patterns.


rule evaluate_measured:
    input:
        model="results/{dataset}/train/model",
        folder=lambda wc: config["measured"]["sets"][wc.set]["folder"],
        labels=lambda wc: config["measured"]["sets"][wc.set]["labels"],
    output:
        predictions="results/{dataset}/measured/{set}/predictions.csv",
        metrics="results/{dataset}/measured/{set}/metrics.json",
    log:
        "results/{dataset}/logs/evaluate_measured/{set}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate_measured/{set}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_measured.py"


rule plot_synthetic_vs_measured:
    input:
        synthetic="results/{dataset}/evaluate/metrics.json",
        measured="results/{dataset}/measured/{set}/metrics.json",
    output:
        report(
            "results/{dataset}/plots/synthetic_vs_measured_{set}.png",
            caption="../report/synthetic_vs_measured.rst",
            category="Evaluation",
        ),
    log:
        "results/{dataset}/logs/plot_synthetic_vs_measured/{set}.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_synthetic_vs_measured/{set}.tsv"
    conda:
        ENV
    script:
        "../scripts/plot_synthetic_vs_measured.py"


rule plot_augmentations:
    input:
        "results/{dataset}/sticks.parquet",
    output:
        report(
            "results/{dataset}/plots/augmentations.png",
            caption="../report/augmentations.rst",
            category="Rendering",
        ),
    log:
        "results/{dataset}/logs/plot_augmentations.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_augmentations.tsv"
    conda:
        ENV
    params:
        instrument=config["instrument"],
        augment=config["augment"],
    script:
        "../scripts/plot_augmentations.py"
