# Phase identification of folders of measured mixture patterns against a library of reference phases:
# per pattern a figure (measured, fit, each phase, difference, tick marks) and the fit as JSON.


rule identify_phases:
    input:
        folder=lambda wc: config["phases"]["sets"][wc.set]["folder"],
        library=lambda wc: config["phases"]["library"],
    output:
        summary="results/{dataset}/phases/{set}/summary.csv",
        figures=directory("results/{dataset}/phases/{set}/figures"),
    log:
        "results/{dataset}/logs/identify_phases/{set}.log",
    benchmark:
        "results/{dataset}/benchmarks/identify_phases/{set}.tsv"
    conda:
        ENV
    params:
        wavelength_A=lambda wc: config["phases"]["sets"][wc.set].get("wavelength_A"),
        lattice_sigma=config["phases"]["lattice_sigma"],
    script:
        "../scripts/identify_phases.py"
