from xrdid.evaluate.novelty import write_novelty
from xrdid.logs import log_to_file

log_to_file(snakemake.log[0])
write_novelty(
    sticks=snakemake.input.sticks,
    vae=snakemake.input.vae,
    cnn=snakemake.params.cnn,
    measured=snakemake.params.measured,
    n_per_set=snakemake.params.n,
    threads=snakemake.threads,
    json_out=snakemake.output.json,
    markdown_out=snakemake.output.markdown,
    html_out=snakemake.output.html,
)
