rule plot_curves:
    input:
        "results/{dataset}/train/history.csv",
    output:
        report(
            "results/{dataset}/plots/curves.png",
            caption="../report/curves.rst",
            category="Training",
        ),
    log:
        "results/{dataset}/logs/plot_curves.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_curves.tsv"
    conda:
        ENV
    script:
        "../scripts/plot_curves.py"


rule plot_confusion:
    input:
        "results/{dataset}/evaluate/confusion_{head}.csv",
    output:
        report(
            "results/{dataset}/plots/confusion_{head}.png",
            caption="../report/confusion.rst",
            category="Evaluation",
        ),
    log:
        "results/{dataset}/logs/plot_confusion/{head}.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_confusion/{head}.tsv"
    wildcard_constraints:
        head="space_group|crystal_system",
    conda:
        ENV
    script:
        "../scripts/plot_confusion.py"


rule tabulate_metrics:
    input:
        cnn="results/{dataset}/evaluate/metrics.json",
        indexing="results/{dataset}/evaluate/indexing.json",
    output:
        report(
            "results/{dataset}/evaluate/metrics.html",
            caption="../report/metrics.rst",
            category="Evaluation",
        ),
    log:
        "results/{dataset}/logs/tabulate_metrics.log",
    benchmark:
        "results/{dataset}/benchmarks/tabulate_metrics.tsv"
    conda:
        ENV
    script:
        "../scripts/tabulate_metrics.py"
