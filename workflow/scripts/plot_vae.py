from xrdid.logs import log_to_file
from xrdid.plots.vae import plot_vae

log_to_file(snakemake.log[0])
plot_vae(
    vae=snakemake.input.vae,
    sticks=snakemake.input.sticks,
    measured=snakemake.params.measured,
    latent_map=snakemake.output.latent_map,
    reconstructions=snakemake.output.reconstructions,
)
