rule generate_structures:
    output:
        table="resources/structures/{dataset}/{source}.parquet",
        failed="resources/structures/{dataset}/{source}.failed.parquet",
    log:
        "results/{dataset}/logs/generate_structures/{source}.log",
    benchmark:
        "results/{dataset}/benchmarks/generate_structures/{source}.tsv"
    conda:
        ENV
    # Uses every core it is given (Snakemake scales 64 down to --cores).
    threads: 64
    params:
        settings=lambda wc: config["structures"][wc.source],
        symprec=config["structures"]["symprec"],
        # Finished download chunks are kept here so an interrupted download resumes.
        state_dir=lambda wc: f"resources/structures/{wc.dataset}/{wc.source}.state",
    script:
        "../scripts/generate_structures.py"
