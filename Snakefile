# xrdid: structures → sticks → training → evaluation → figures.
#
# Path grammar (everything a run makes):
#   resources/structures/{dataset}/{source}.parquet           structures table (+ {source}.failed.parquet)
#   results/{dataset}/sticks/chunk-{chunk}.parquet            stick patterns of one chunk of structures
#   results/{dataset}/sticks.parquet                          all chunks, with the group-wise split
#   results/{dataset}/train/model/                            checkpoint: model.json + weights.pt
#   results/{dataset}/train/history.csv                       per-epoch losses and validation accuracies
#   results/{dataset}/evaluate/{metrics.json,metrics.html,confusion_*.csv} test-split metrics
#   results/{dataset}/plots/{curves,confusion_*,augmentations}.png  figures
#   results/{dataset}/measured/{set}/{predictions.csv,metrics.json}  the model on measured patterns
#   results/{dataset}/plots/synthetic_vs_measured_{set}.png   synthetic test split vs. measured set
#   results/{dataset}/phases/{set}/{summary.csv,figures/}      phases of a folder of mixture patterns
#   results/{dataset}/vae/model/                              the VAE: vae.json + vae.pt (+ vae/history.csv)
#   results/{dataset}/vae/{comparison,novelty}.{json,csv,md,html}  CNN vs VAE; the novelty benchmark
#   results/{dataset}/plots/vae_{comparison,latent_map,reconstructions}.png  the VAE's figures
#   results/{dataset}/logs/…, results/{dataset}/benchmarks/…   one log and one benchmark per job

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/measured.smk"
include: "workflow/rules/phases.smk"
include: "workflow/rules/vae.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
        get_vae_outputs(),
