"""Records of certification runs: certify logs and their analysis, logs that resume and merge across
``torchrun`` ranks, and the certificate document (JSON) of one input."""
