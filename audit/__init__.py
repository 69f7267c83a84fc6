"""Privacy auditing: empirical lower bounds on epsilon from attacks (issue: privacy audit)."""
