rule simulate_chunk:
    input:
        structures=get_structure_tables,
    output:
        "results/{dataset}/sticks/chunk-{chunk}.parquet",
    log:
        "results/{dataset}/logs/simulate_chunk/{chunk}.log",
    benchmark:
        "results/{dataset}/benchmarks/simulate_chunk/{chunk}.tsv"
    conda:
        ENV
    params:
        n_chunks=N_CHUNKS,
        d_min_A=config["simulate"]["d_min_A"],
        max_sticks=config["simulate"]["max_sticks"],
        group_by=config["split"]["group_by"],
    script:
        "../scripts/simulate_chunk.py"


rule merge_sticks:
    input:
        get_chunks,
    output:
        "results/{dataset}/sticks.parquet",
    log:
        "results/{dataset}/logs/merge_sticks.log",
    benchmark:
        "results/{dataset}/benchmarks/merge_sticks.tsv"
    conda:
        ENV
    threads: 2
    params:
        fractions=config["split"]["fractions"],
        seed=config["split"]["seed"],
    script:
        "../scripts/merge_sticks.py"
