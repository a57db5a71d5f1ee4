rule generate_structures:
    output:
        table="resources/structures/{dataset}/{source}.parquet",
        failed="resources/structures/{dataset}/{source}.failed.parquet",
    log:
        "results/{dataset}/logs/generate_structures/{source}.log",
    benchmark:
        "results/{dataset}/benchmarks/generate_structures/{source}.tsv"
    wildcard_constraints:
        source="|".join(BUILT_SOURCES),
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


# Crystals derived from other sources' real structures (xrdid.structures.derived).
rule derive_structures:
    input:
        get_parent_tables,
    output:
        table="resources/structures/{dataset}/derived.parquet",
        failed="resources/structures/{dataset}/derived.failed.parquet",
    log:
        "results/{dataset}/logs/derive_structures.log",
    benchmark:
        "results/{dataset}/benchmarks/derive_structures.tsv"
    conda:
        ENV
    # Uses every core it is given (Snakemake scales 64 down to --cores).
    threads: 64
    params:
        settings=config["structures"]["derived"],
        symprec=config["structures"]["symprec"],
    script:
        "../scripts/derive_structures.py"
