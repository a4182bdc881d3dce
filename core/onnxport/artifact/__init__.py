"""The artifact directory: written complete or not at all, read back with every path
confined to it, published and pulled through publisher plugins."""
