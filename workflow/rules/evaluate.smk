rule evaluate_cnn:
    input:
        model="results/{dataset}/train/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        metrics="results/{dataset}/evaluate/metrics.json",
        confusion_space_group="results/{dataset}/evaluate/confusion_space_group.csv",
        confusion_crystal_system="results/{dataset}/evaluate/confusion_crystal_system.csv",
    log:
        "results/{dataset}/logs/evaluate_cnn.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate_cnn.tsv"
    conda:
        ENV
    # Uses every core it is given (Snakemake scales 64 down to --cores).
    threads: 64
    params:
        augment=config["augment"],
        seed=config["evaluate"]["seed"],
    script:
        "../scripts/evaluate_cnn.py"


rule evaluate_indexing:
    input:
        sticks="results/{dataset}/sticks.parquet",
        structures=get_structure_tables,
    output:
        "results/{dataset}/evaluate/indexing.json",
    log:
        "results/{dataset}/logs/evaluate_indexing.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate_indexing.tsv"
    conda:
        ENV
    params:
        instrument=config["instrument"],
        augment=config["augment"],
        seed=config["evaluate"]["seed"],
        max_patterns=config["evaluate"]["indexing_max_patterns"],
        time_budget_s=config["evaluate"]["indexing_time_budget_s"],
    script:
        "../scripts/evaluate_indexing.py"


# The real structures of a split (held out by structure type), rendered for each instrument and
# classified as `xrdid predict` classifies a file (xrdid.evaluate.real_split).
rule evaluate_real:
    input:
        model="results/{dataset}/train/model",
        sticks="results/{dataset}/sticks.parquet",
    output:
        metrics="results/{dataset}/evaluate/real_{split}.json",
        predictions="results/{dataset}/evaluate/real_{split}_predictions.csv",
    log:
        "results/{dataset}/logs/evaluate_real/{split}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate_real/{split}.tsv"
    wildcard_constraints:
        split="val|test",
    conda:
        ENV
    # Uses every core it is given (Snakemake scales 64 down to --cores).
    threads: 64
    params:
        instruments=config["evaluate"]["real"]["instruments"],
        draws=config["evaluate"]["real"]["draws"],
        seed=config["evaluate"]["seed"],
    script:
        "../scripts/evaluate_real.py"
