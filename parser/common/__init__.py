"""What every stage of the parser shares: numpy helpers on sorted arrays (arrays), the
unsampling of sampled counts (sampling), files written whole or not at all (atomic), and
protocol-buffer fields written by hand (protobuf). Imports no other stage."""
