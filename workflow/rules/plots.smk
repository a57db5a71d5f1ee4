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


rule plot_scaling:
    input:
        "results/{dataset}/train/history.csv",
    output:
        report(
            "results/{dataset}/plots/scaling.png",
            caption="../report/scaling.rst",
            category="Training",
        ),
    log:
        "results/{dataset}/logs/plot_scaling.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_scaling.tsv"
    conda:
        ENV
    script:
        "../scripts/plot_scaling.py"


rule plot_real_recall:
    input:
        "results/{dataset}/evaluate/real_{split}.json",
    output:
        report(
            "results/{dataset}/plots/real_{split}_recall.png",
            caption="../report/real_recall.rst",
            category="Evaluation",
        ),
    log:
        "results/{dataset}/logs/plot_real_recall/{split}.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_real_recall/{split}.tsv"
    wildcard_constraints:
        split="val|test",
    conda:
        ENV
    script:
        "../scripts/plot_real_recall.py"
