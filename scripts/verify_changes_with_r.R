# Independent recomputation of the changes between two waves with R's survey package.
#
# For reviewers who have R (issue 18): rebuilds each wave's design from its cleaned data and its
# design file (as scripts/verify_with_r.R does), then, for every « share » indicator compared
# across the waves, for each CAE of both waves and for the consortium:
#   1. the two waves' estimates and standard errors (svymean on each wave's design), their
#      difference and sqrt(V1 + V2);
#   2. the same change from ONE design stacking both waves (strata = wave x post-stratum, each
#      with its own fpc): four weighted totals (svytotal) and the change as
#      their function (svycontrast, delta method), every covariance included — none between
#      the waves, whose strata are apart (the check is on waves without overlap; with an
#      overlap it is the independent-waves standard error the reports use, see
#      src/cae_impact/analysis/waves.py);
# and compares both with reports/<current wave>/_waves/changes.csv. Exit status 1 if any change
# or standard error differs by more than 1e-6 (absolute, on proportions).
#
#   make verify-r-changes
#   Rscript scripts/verify_changes_with_r.R PREV_WAVE CUR_WAVE PREV_CODEBOOK CUR_CODEBOOK \
#           [reports_root] [responses_csv_root]
#
# responses_csv_root holds <wave>/<cae>.csv (scripts/responses_to_csv.py, one call per wave).
# Needs R with the packages survey and yaml (Debian: r-base-core r-cran-survey r-cran-yaml).
# Not run by `make test` (R is not part of the project's environment); tests/test_waves.py
# computes the same two routes in Python.

suppressMessages({ library(survey); library(yaml) })
args <- commandArgs(trailingOnly = TRUE)
prev_wave <- if (length(args) >= 1) args[1] else "2026"
cur_wave <- if (length(args) >= 2) args[2] else "2027"
prev_cb <- if (length(args) >= 3) args[3] else "config/codebook.yaml"
cur_cb <- if (length(args) >= 4) args[4] else "config/codebook-2027.yaml"
reports <- if (length(args) >= 5) args[5] else "reports"
csv_root <- if (length(args) >= 6) args[6] else file.path("build", "verify-r-changes")
options(survey.lonely.psu = "adjust")

wave_data <- function(wave) {
  des_df <- read.csv(file.path(reports, wave, "_study", "design.csv"), stringsAsFactors = FALSE)
  files <- Sys.glob(file.path(csv_root, wave, "*.csv"))
  resp <- do.call(rbind, lapply(files, function(f) read.csv(f, stringsAsFactors = FALSE, na.strings = "")))
  d <- merge(des_df, resp, by = c("respondent_id", "cae_id"))
  stopifnot(nrow(d) == nrow(des_df))
  d$wave <- wave
  d$stratum <- paste(wave, d$cae_id)
  d$post_stratum <- ifelse(d$post_stratum == "", "", paste(wave, d$post_stratum))
  if ("variance_stratum" %in% names(d)) d$variance_stratum <- paste(wave, d$variance_stratum)
  d[order(d$cae_id, d$respondent_id), ]
}
make_design <- function(d) {
  # The variance design of the reports (scripts/verify_with_r.R): the post-strata as strata,
  # each with its own fpc; the CAEs when a wave has no post-strata.
  if ("variance_stratum" %in% names(d) && all(!is.na(d$variance_stratum))) {
    svydesign(ids = ~1, strata = ~variance_stratum, fpc = ~variance_population, weights = ~weight, data = d)
  } else {
    svydesign(ids = ~1, strata = ~stratum, fpc = ~population, weights = ~weight, data = d)
  }
}
codebook_valid <- function(path) {
  cb <- yaml::read_yaml(path)
  questions <- setNames(cb$questions, vapply(cb$questions, function(q) q$id, ""))
  list(cb = cb, valid = function(qid) {
    sc <- cb$scales[[questions[[qid]]$scale]]
    codes <- vapply(sc$choices, function(ch) ch$code, "")
    miss <- vapply(sc$choices, function(ch) isTRUE(ch$missing), TRUE)
    codes[!miss]
  })
}

d1 <- wave_data(prev_wave)
d2 <- wave_data(cur_wave)
cb1 <- codebook_valid(prev_cb)
cb2 <- codebook_valid(cur_cb)
common_cols <- intersect(names(d1), names(d2))
stacked <- rbind(d1[, common_cols], d2[, common_cols])
ch <- read.csv(file.path(reports, cur_wave, "_waves", "changes.csv"), stringsAsFactors = FALSE,
               na.strings = c("", "NA"))
ch$category[is.na(ch$category)] <- ""

targets <- c(intersect(sort(unique(d1$cae_id)), sort(unique(d2$cae_id))), "consortium")
worst <- 0
for (ind in cb2$cb$indicators) {
  if (ind$rule$kind != "share") next
  q <- ind$rule$question
  y_of <- function(d, v) ifelse(d[[q]] %in% v(q), as.numeric(d[[q]] %in% unlist(ind$rule$codes)), NA)
  for (t in targets) {
    row <- ch[ch$indicator_id == ind$id & ch$target == t & ch$category == "" &
                ch$scope == ifelse(t == "consortium", "consortium", "cae"), ]
    if (nrow(row) != 1 || isTRUE(row$suppressed) || is.na(row$se)) next
    one <- function(d, v) {
      # a subset of a post-stratified design keeps its rows (weight 0): the values of the rows
      # out of the base must not be NA, so the base is a flag and y is 0 out of it
      y <- y_of(d, v)
      d$.base <- !is.na(y)
      d$.y <- ifelse(d$.base, y, 0)
      des <- make_design(d)
      sub <- if (t == "consortium") subset(des, .base) else subset(des, cae_id == t & .base)
      m <- svymean(~.y, sub)
      c(coef(m), SE(m))
    }
    r1 <- one(d1, cb1$valid)
    r2 <- one(d2, cb2$valid)
    change <- r2[1] - r1[1]
    se <- sqrt(r1[2]^2 + r2[2]^2)
    # the stacked design: both waves, strata wave x CAE; the change as a function of four
    # weighted totals (delta method, svycontrast), the covariances of the two waves included
    s <- stacked
    y <- c(y_of(d1, cb1$valid), y_of(d2, cb2$valid))
    dom <- !is.na(y) & (t == "consortium" | s$cae_id == t)
    s$.num1 <- ifelse(dom & s$wave == prev_wave, y, 0)
    s$.den1 <- as.numeric(dom & s$wave == prev_wave)
    s$.num2 <- ifelse(dom & s$wave == cur_wave, y, 0)
    s$.den2 <- as.numeric(dom & s$wave == cur_wave)
    tot <- svytotal(~.num1 + .den1 + .num2 + .den2, make_design(s))
    con <- svycontrast(tot, quote(.num2 / .den2 - .num1 / .den1))
    diffs <- c(abs(change - row$change), abs(se - row$se), abs(coef(con) - row$change), abs(SE(con) - row$se))
    worst <- max(worst, diffs)
    cat(sprintf("%-26s %-11s R %+.6f (%.6f) stacked %+.6f (%.6f) py %+.6f (%.6f)\n", ind$id, t,
                change, se, coef(con), SE(con), row$change, row$se))
  }
}
cat(sprintf("largest absolute difference: %.2e\n", worst))
quit(status = if (worst > 1e-6) 1 else 0)
