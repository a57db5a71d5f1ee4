from xrdid.logs import log_to_file
from xrdid.mixtures.batch import identify_folder

log_to_file(snakemake.log[0])
identify_folder(
    snakemake.input.folder,
    snakemake.input.library,
    snakemake.output.summary,
    snakemake.output.figures,
    wavelength_A=snakemake.params.wavelength_A,
    lattice_sigma=snakemake.params.lattice_sigma,
)
