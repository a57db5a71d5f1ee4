from xrdid.logs import log_to_file
from xrdid.train.vae import train_vae_from_config

log_to_file(snakemake.log[0])
train_vae_from_config(
    sticks=snakemake.input[0],
    checkpoint=snakemake.output.model,
    history=snakemake.output.history,
    instrument=snakemake.params.instrument,
    augment=snakemake.params.augment,
    model=snakemake.params.model,
    train=snakemake.params.train,
    threads=snakemake.threads,
    resume_dir=snakemake.params.resume_dir,
)
