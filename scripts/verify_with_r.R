# Independent recomputation of the published shares with R's survey package (T. Lumley).
#
# For reviewers who have R: rebuilds the consortium design from the cleaned data and the design
# file the estimation step writes, recomputes every « share » indicator for the consortium and
# for each CAE (svyciprop, logit interval, as the reports), and compares them with the
# reports' indicators.csv. Exit status 1 if any published estimate or bound differs by more
# than a relative 1e-6.
#
#   make verify-r       (converts the cleaned parquet files to CSV, then runs this script)
#   Rscript scripts/verify_with_r.R [wave] [reports_root] [responses_csv_root]
#
# Needs R with the packages survey and yaml (Debian: r-base-core r-cran-survey r-cran-yaml).
# Not run by `make test` (R is not part of the project's environment); the Python estimation is
# checked against R's own outputs in tests/test_survey_oracles.py.
#
# Design: the final weights as written by the estimation step (post-stratified on sex x contract
# stage within CAE, then trimmed within CAE); for the variance, the post-strata are the strata,
# each with its own fpc, the cell's register count (columns variance_stratum and
# variance_population of design.csv; a post-stratum of one respondent shares the stratum of
# another of its CAE): response-homogeneity groups, as cae_impact.estimation.cells_as_strata.
# Without post-strata (no register counts by sex and stage), strata = CAEs and fpc = N_h.

suppressMessages({ library(survey); library(yaml) })
args <- commandArgs(trailingOnly = TRUE)
wave <- if (length(args) >= 1) args[1] else "2026"
reports <- if (length(args) >= 2) args[2] else "reports"
csv_root <- if (length(args) >= 3) args[3] else file.path("build", "verify-r")

design_file <- file.path(reports, wave, "_study", "design.csv")
des_df <- read.csv(design_file, stringsAsFactors = FALSE)
files <- Sys.glob(file.path(csv_root, "*.csv"))
resp <- do.call(rbind, lapply(files, function(f) read.csv(f, stringsAsFactors = FALSE, na.strings = "")))
d <- merge(des_df, resp, by = c("respondent_id", "cae_id"))
stopifnot(nrow(d) == nrow(des_df))
d <- d[order(d$cae_id, d$respondent_id), ]

des <- if ("variance_stratum" %in% names(d)) {
  svydesign(ids = ~1, strata = ~variance_stratum, fpc = ~variance_population, weights = ~weight, data = d)
} else {
  svydesign(ids = ~1, strata = ~cae_id, fpc = ~population, weights = ~weight, data = d)
}
options(survey.lonely.psu = "adjust")

cb <- yaml::read_yaml("config/codebook.yaml")
scales <- setNames(cb$scales, names(cb$scales))
questions <- setNames(cb$questions, vapply(cb$questions, function(q) q$id, ""))
valid_codes <- function(qid) {
  sc <- scales[[questions[[qid]]$scale]]
  codes <- vapply(sc$choices, function(ch) ch$code, "")
  miss <- vapply(sc$choices, function(ch) isTRUE(ch$missing), TRUE)
  codes[!miss]
}

targets <- c(sort(unique(d$cae_id)), "consortium")
worst <- 0
for (ind in cb$indicators) {
  if (ind$rule$kind != "share") next
  q <- ind$rule$question
  y <- ifelse(d[[q]] %in% valid_codes(q), as.numeric(d[[q]] %in% unlist(ind$rule$codes)), NA)
  des <- update(des, .y = y)
  for (t in targets) {
    csv <- file.path(reports, wave, t, "indicators.csv")
    if (!file.exists(csv)) next
    tab <- read.csv(csv, stringsAsFactors = FALSE, na.strings = c("", "NA"))
    row <- tab[tab$indicator_id == ind$id & tab$target == t & tab$breakdown == "total" &
                 is.na(tab$category), ]
    if (nrow(row) != 1 || isTRUE(row$suppressed == "True") || is.na(row$estimate)) next
    sub <- if (t == "consortium") subset(des, !is.na(.y)) else subset(des, cae_id == t & !is.na(.y))
    ci <- svyciprop(~.y, sub, method = "logit", df = degf(sub))
    r <- c(coef(ci), attr(ci, "ci"))
    py <- c(row$estimate, row$ci_low, row$ci_high)
    rel <- max(abs(r - py) / pmax(abs(r), 1e-12))
    worst <- max(worst, rel)
    cat(sprintf("%-28s %-11s R %.6f [%.6f, %.6f]  py %.6f [%.6f, %.6f]  rel %.1e\n",
                ind$id, t, r[1], r[2], r[3], py[1], py[2], py[3], rel))
  }
}
cat(sprintf("largest relative difference: %.2e\n", worst))
quit(status = if (worst > 1e-6) 1 else 0)
