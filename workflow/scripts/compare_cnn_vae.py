from xrdid.evaluate.compare import write_comparison
from xrdid.logs import log_to_file

log_to_file(snakemake.log[0])
write_comparison(
    cnn=snakemake.params.cnn,
    vae=snakemake.input.vae,
    sticks=snakemake.input.sticks,
    measured=snakemake.params.measured,
    prototypes=snakemake.params.prototypes,
    draws=snakemake.params.draws,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    json_out=snakemake.output.json,
    csv_out=snakemake.output.csv,
    markdown_out=snakemake.output.markdown,
    html_out=snakemake.output.html,
    figure_out=snakemake.output.figure,
)
