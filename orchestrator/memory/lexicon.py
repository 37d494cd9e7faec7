"""The vocabulary the memory reads hypotheses with: ML concepts and their wordings, directions,
stopwords and a light stemmer. Written by hand (no downloads at run time).

Each concept belongs to a family. Knobs (learning rate, dropout, number of trees...) form one
family; alternatives that replace one another form others (optimizers, schedules, activations,
augmentations...); "where" holds the parts of a model a change acts on. A hypothesis that names
one alternative and another that names a different one of the same family are different ideas.
"""

from __future__ import annotations

import re

# ----- stemming -----------------------------------------------------------------------------
_IRREGULAR = {
    "neighbours": "neighbor", "neighbour": "neighbor", "neighbors": "neighbor", "neighbor": "neighbor",
    "colour": "color", "colours": "color", "data": "data", "bias": "bias", "biases": "bias", "less": "less",
    "loss": "loss", "losses": "loss", "was": "was", "has": "has", "its": "its", "this": "this", "does": "does",
    "focus": "focus", "plus": "plus", "gaussian": "gaussian", "axis": "axis", "analysis": "analysis",
    "lasso": "lasso", "process": "process", "class": "class", "classes": "class", "column": "featur",
    "columns": "featur",
}
_VOWEL = re.compile(r"[aeiouy]")


def stem(word: str) -> str:
    """A light stemmer: plurals, -ing, -ed, -ly, -ation, a final e; British -ise as -ize."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    w = word
    if len(w) > 6:
        w = re.sub(r"is(e|ed|es|ing|ation|ations)$", r"iz\1", w)
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ization", "ation"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[: -len(suffix)] + ("iz" if suffix == "ization" else "")
            break
    else:
        if w.endswith("ied") and len(w) > 4:
            w = w[:-3] + "y"
        elif w.endswith("ing") and len(w) > 5 and _VOWEL.search(w[:-3]):
            w = _undouble(w[:-3])
        elif w.endswith("ed") and len(w) > 4 and _VOWEL.search(w[:-2]):
            w = _undouble(w[:-2])
        elif w.endswith("ly") and len(w) > 5:
            w = w[:-2]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def _list(text: str) -> list[str]:
    """Words of a whitespace-separated list (long word lists read better as text)."""
    return text.split()


def _undouble(w: str) -> str:
    if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz":
        return w[:-1]
    return w


# ----- concepts -----------------------------------------------------------------------------
# "family.concept [family.concept | dir:X ...]: wording | wording". A wording may name several
# labels (a concept and a direction: "more trees"). Wordings are stemmed like the text.
_LEXICON = """
knob.lr: learning rate | learning rates | lr | step size | step sizes | eta | shrinkage | base lr | max lr | peak lr
    | initial learning rate | base learning rate | peak learning rate | max learning rate | lr0
knob.momentum: momentum | momentum coefficient | momentum term
knob.beta1: beta1 | beta 1 | first moment decay
knob.beta2: beta2 | beta 2 | second moment decay | second moment
knob.eps: epsilon | eps | adam epsilon
knob.weight_decay: weight decay | l2 penalty | l2 regularization | l2 regularisation | l2 weight regularization | l2
    | weight regularization | wd | ridge penalty
knob.dropout: dropout | drop out | dropout rate | dropout probability | dropout layer | dropouts
knob.batch_size: batch size | batch sizes | batchsize | mini batch size | minibatch size | batch | batches
    | mini batch | mini batches | minibatch | minibatches
knob.width: hidden size | hidden units | hidden unit | hidden dimension | hidden dim | hidden width
    | hidden layer width | hidden layer size | width | neurons | units | channels | channel count | channel counts
    | number of channels | filters | number of filters | d model | embedding dimension | embedding dim
    | embedding size | n embd | model dimension
knob.width dir:up: wider | widen
knob.width dir:down: narrower
knob.depth: depth | number of layers | num layers | n layer | n layers | number of hidden layers
    | number of transformer layers | number of blocks | number of transformer blocks | number of lstm layers
    | layer count | number of residual blocks
knob.depth dir:up: deeper | deepen | more layers | extra layer | another layer | additional layer | one more layer
    | more blocks | extra block | another block
knob.depth dir:down: shallower | fewer layers | fewer blocks
knob.epochs: epochs | number of epochs | training epochs | num epochs | n epochs | training iterations
    | training steps | training length | epoch count
knob.epochs dir:up: train longer | training longer | longer training | more epochs | train for longer
knob.epochs dir:down: fewer epochs | shorter training | train shorter
knob.warmup: warmup | warm up | warmup steps | warmup period | warm up phase | warmup phase | warmup epochs
    | number of warmup steps
knob.label_smoothing: label smoothing | smoothed labels | smooth labels | label smooth
knob.grad_clip: gradient clipping | clip gradients | clip the gradients | clip gradient | gradient norm clipping
    | grad clip | clip grad | gradient clip | clipping threshold | clip norm | clip threshold
knob.grad_clip clip.clip_norm: clip grad norm | global norm | max norm | gradient norm | norm clipping
knob.grad_clip clip.clip_value: clip grad value | by value | value clipping | clip value
knob.kernel_size: kernel size | kernel sizes | filter size | receptive field | kernelsize
knob.stride: stride | strides
knob.heads: attention heads | number of heads | n head | num heads | number of attention heads | n heads
knob.context_len: context length | context window | block size | sequence length | seq len | max len | max length
    | maximum sequence length | max sequence length | context size
knob.vocab_size: vocabulary size | vocab size | vocabulary
knob.ffn_ratio: expansion ratio | mlp ratio | ffn dimension | feed forward dimension | mlp expansion | ffn ratio
knob.resolution: resolution | image size | image resolution | input resolution
knob.resolution dir:down: downscale | downsize
knob.resolution dir:up: upscale | upsample the images
knob.val_split: validation split | validation fraction | validation set size | validation size | holdout fraction
    | hold out | held out set | validation percentage
knob.n_estimators: n estimators | number of trees | estimators | number of estimators | boosting rounds
    | number of boosting rounds | num boost round | n trees | boosting iterations
knob.n_estimators dir:up: more trees | more estimators | more boosting rounds
knob.n_estimators dir:down: fewer trees | fewer estimators
knob.max_depth: max depth | maximum depth | tree depth | depth of the trees | max tree depth
knob.max_depth dir:up: deeper trees
knob.max_depth dir:down: shallower trees
knob.min_samples_leaf: min samples leaf | min samples per leaf | minimum samples per leaf | samples per leaf
    | leaf size | min leaf size
knob.min_samples_split: min samples split | minimum samples split
knob.max_features: max features | maximum features
knob.max_samples: max samples | maximum samples
knob.gb_subsample: subsample ratio | subsample fraction | row subsampling
knob.min_child_weight: min child weight
knob.l1_ratio: l1 ratio
knob.regc: regc | inverse regularization strength | inverse of regularization strength
knob.n_neighbors: n neighbors | number of neighbors | neighbor | neighbor count | k neighbors
knob.n_components: n components | number of components | components | pca components
features.pca knob.n_components: principal components
knob.poly_degree: polynomial degree | polynomial feature degree | poly degree | degree of the polynomial
knob.num_workers: num workers | workers | number of workers | data loader workers | dataloader workers
knob.max_iter: max iter | maximum iterations | max iterations | solver iterations
knob.temperature: temperature | softmax temperature
knob.grad_accum: gradient accumulation | accumulate gradients | accumulation steps | grad accumulation
    | accumulate the gradients
knob.tf_min_df: min df | max df | minimum document frequency
knob.num_leaves: num leaves | max leaf nodes | number of leaves
knob.colsample: colsample bytree | colsample | feature fraction | column subsampling
knob.reg_alpha: reg alpha | reg lambda
knob.ccp_alpha: ccp alpha | cost complexity pruning | pruning strength
knob.smoothing_var: var smoothing
knob.tol: tolerance | tol
knob.hidden_layer_sizes: hidden layer sizes
knob.prefetch: prefetch factor | prefetch
knob.ema_decay: ema decay
knob.loss_weight: loss weight | weight of the auxiliary loss | auxiliary loss weight

optimizer.sgd: sgd | stochastic gradient descent | plain sgd | vanilla sgd | sgdm | momentum sgd | sgd with momentum
optimizer.adam: adam
optimizer.adamw: adamw | adam w | decoupled weight decay
optimizer.rmsprop: rmsprop | rms prop | rmsprop optimizer
optimizer.lion: lion
optimizer.adafactor: adafactor
optimizer.adagrad: adagrad
optimizer.lamb: lamb
optimizer.sam: sam | sharpness aware minimization
optimizer.radam: radam
optimizer.nadam: nadam
optimizer.adamax: adamax
optimizer.adadelta: adadelta
optimizer.adabelief: adabelief
optimizer.lars: lars
optimizer.lookahead: lookahead
optimizer.sophia: sophia
optimizer.shampoo: shampoo
lrgroups.discriminative_lr: discriminative learning rate | discriminative learning rates | discriminative lr
    | layer wise learning rate | layerwise learning rate | per layer learning rate | differential learning rates
    | parameter groups | param groups | layer wise lr decay | layer wise learning rate decay
nesterov.nesterov: nesterov | nesterov momentum | nesterov acceleration | nesterov true
solver.lbfgs: lbfgs | l bfgs
solver.saga: saga
solver.liblinear: liblinear
solver.newton: newton cg | newton

schedule.cosine: cosine | cosine annealing | cosine decay | cosine schedule | cosine annealing lr | half cosine
    | cosine curve | cosine learning rate | cosineannealinglr | t max
schedule.warm_restarts: warm restarts | sgdr | cosine annealing warm restarts | restarts
schedule.step_decay: stepdecayschedule | step decay | steplr | step lr | multisteplr | multi step lr | multistep
    | milestones | step schedule | piecewise constant | step wise decay
schedule.exp_decay: expdecayschedule | exponential decay | exponentiallr | exponential lr | exponential schedule
    | exponentially
schedule.onecycle: one cycle | onecycle | onecyclelr | 1cycle | one cycle policy | one cycle lr
schedule.cyclic: cyclical | cyclic | cycliclr | triangular | cyclic lr
schedule.plateau: reduce lr on plateau | reducelronplateau | plateau scheduler | on plateau
schedule.linear_decay: linear decay | linearly decay | decay linearly | linear schedule | linear decay schedule
    | linearly decaying
schedule.constant_lr: constant learning rate | constant lr | fixed learning rate | fixed lr
schedule.poly_decay: polynomial decay | poly decay
schedule.inv_sqrt: inverse square root | inverse sqrt | noam | rsqrt schedule
schedule.lambda_lr: lambdalr | lambda lr

activation.relu: relu | rectified linear unit | rectifier
activation.gelu: gelu
activation.silu: silu | swish
activation.leakyrelu: leaky relu | leakyrelu
activation.elu: elu
activation.tanh: tanh
activation.mish: mish
activation.prelu: prelu
activation.selu: selu
activation.softplus: softplus
activation.hardswish: hardswish | hard swish
activation.glu: glu | gated linear unit | swiglu | geglu | gating mechanism
activation.sigmoid: sigmoid

norm.batchnorm: batch norm | batchnorm | batch normalization | batch normalisation | batchnorm1d | batchnorm2d | bn
norm.layernorm: layer norm | layernorm | layer normalization | layer normalisation | ln
norm.groupnorm: group norm | groupnorm | group normalization
norm.instancenorm: instance norm | instancenorm | instance normalization
norm.rmsnorm: rmsnorm | rms norm
norm.weightnorm: weight norm | weight normalization | weight normalisation | weightnorm
spectral.spectral_norm: spectral norm | spectral normalization | spectral normalisation

pooling.maxpool: max pooling | maxpool | max pool | maxpool2d | max pooling layer
pooling.avgpool: average pooling | avg pooling | avgpool | mean pooling | avgpool2d | avg pool
pooling.gap: global average pooling | adaptive average pooling | adaptiveavgpool2d | adaptive avg pool
    | global pooling | global avg pool
pooling.strided_conv: strided convolution | strided convolutions | strided conv | strided convs
pooling.blurpool: blur pooling | blurpool | anti aliased pooling
pooling.attention_pool: attention pooling

init.kaiming: kaiming | kaiming normal | kaiming uniform | he initialization | he init | he normal
init.xavier: xavier | glorot | xavier uniform | xavier normal
init.orthogonal: orthogonal initialization | orthogonal init
init.lecun: lecun | lecun normal
init.zero_init: zero init | zero initialization | zero initialize

loss.ce: cross entropy | crossentropy | crossentropyloss | ce loss | nll loss | log loss
loss.focal: focal loss | focal
loss.mse: mse | mean squared error | squared error | l2 loss | mseloss | squared loss
loss.mae: mae | mean absolute error | absolute error | l1 loss | l1loss
loss.huber: huber | huber loss | smooth l1 | smoothl1loss | smooth l1 loss
loss.logcosh: log cosh
loss.hinge: hinge | hinge loss
loss.bce: bce | binary cross entropy | bceloss
loss.bce_logits loss.bce: bce with logits | bcewithlogitsloss | binary cross entropy with logits
loss.distillation: distillation | knowledge distillation | distill | teacher | teacher model
loss.aux_loss: auxiliary loss | auxiliary classifier | deep supervision | auxiliary head
loss.contrastive: contrastive loss | contrastive
loss.dice: dice loss | dice
loss.quantile_loss: quantile loss | pinball loss | pinball
loss.kl: kl divergence | kl loss | kullback leibler
loss.triplet: triplet loss | triplet
loss.squared_hinge: squared hinge
loss.confidence_penalty: confidence penalty | entropy regularization | entropy penalty | negative entropy
loss.nll: nll | negative log likelihood | nllloss
imbalance.class_weight: class weight | class weights | weighting positives | weight positives | upweight | up weight
    | upweighting | up weighting | reweight | reweighting | class weighting | weight the classes | weighted loss
    | inverse class frequency | pos weight | positive class weight | weight of the positive class
    | weight of the minority class | class weight balanced
imbalance.oversample: oversample | oversampling | over sample | upsample the minority | random oversampling
imbalance.smote: smote | synthetic minority | borderline smote
imbalance.adasyn: adasyn
imbalance.undersample: undersample | undersampling | under sample | downsample the majority
imbalance.balanced_sampler: weightedrandomsampler | weighted random sampler | class balanced sampler
    | balanced sampler | class balanced

reg.l1: l1 regularization | l1 penalty | lasso | lasso penalty | l1 | l1 regularisation | sparsity penalty
reg.elastic_net: elastic net | elasticnet
reg.early_stop: early stopping | stop early | early stop | stop training early | earlystopping
reg.stoch_depth: stochastic depth | drop path | droppath
reg.freeze: freeze | frozen | freezing | requires grad false
reg.unfreeze: unfreeze | gradual unfreezing | unfreezing
reg.dropconnect: dropconnect | drop connect | weight dropout
reg.recurrent_dropout: recurrent dropout | dropout on the recurrent connections | dropout to the recurrent connections
    | variational dropout
reg.max_norm: max norm constraint | weight constraint
reg.shake: shake shake | shakedrop
averaging.ema: ema | exponential moving average | moving average of the weights | moving average of the parameters
    | polyak averaging | weight ema
averaging.swa: stochastic weight averaging | swa
averaging.ckpt_avg: checkpoint averaging | average the weights of the last | averaging checkpoints
    | weight averaging of checkpoints

augment.hflip: horizontal flip | horizontal flips | randomhorizontalflip | random horizontal flip | hflip | mirror
    | flip | flips
augment.vflip: vertical flip | vertical flips | randomverticalflip | vflip
augment.crop: random crop | random crops | randomcrop | crop | crops | cropping | random resized crop
    | randomresizedcrop
augment.rotation: rotation | rotations | random rotation | randomrotation | rotate
augment.affine: randomaffine | random affine | affine | translation | translations | random shift | random shifts
    | shifts | zoom | zooms | random scaling | shear
augment.color_jitter: color jitter | colorjitter | brightness | contrast | saturation | hue
augment.erasing: cutout | random erasing | randomerasing | erase | erasing | blank out | black out | mask out
    | occlude | occlusion | mask a random patch | mask a random square
augment.mixup: mixup | mix up
augment.cutmix: cutmix | cut mix | paste a patch | paste a random patch | pasting patches | patch from another image
    | cut and paste
augment.noise: gaussian noise | input noise | noise | noise injection
augment.blur: blur | gaussian blur
augment.autoaugment: autoaugment | auto augment | randaugment | rand augment | trivialaugment
augment.tta: test time augmentation | tta
augment.grayscale: grayscale | greyscale | random grayscale
augment.augmix: augmix
augment.perspective: perspective | random perspective
augment.elastic: elastic | elastic deformation | elastic transform
augment.solarize: solarize | posterize | equalize
augment.rot90: rotate by 90 degrees | 90 degree rotations | rot90 | 90 degrees
augment.word_dropout: word dropout | random word deletion | randomly deleting words | random deletion | token dropout
    | word deletion
augment.back_translation: back translation | backtranslation
augment.synonym: synonym replacement | synonym substitution | synonyms
augment.specaugment: specaugment | time masking | frequency masking

scaling.standardize: z score | z scored | z scoring | mean and standard deviation | mean and std | mean and variance
    | standardize | standardization | standardscaler | standard scaler | zero mean | unit variance
    | z score normalization | standardise
scaling.minmax: minmaxscaler | min max | minmax | min max scaling
scaling.quantile: quantiletransformer | quantile transform | quantile transformer | quantile
scaling.robust: robustscaler | robust scaler
scaling.per_image: per image | per image standardization | image standardization
scaling.channel_norm: per channel | channel mean | channel means | dataset mean | transforms normalize
scaling.log_transform: log transform | log1p | logarithm | log scale | log transformation
scaling.power: power transform | powertransformer | yeo johnson | box cox | boxcox
scaling.binning: binning | discretize | kbinsdiscretizer | bucketize | bins

encoding.onehot: one hot | onehotencoder | one hot encoder | one hot encoding | dummy variables | get dummies
encoding.target_enc: target encoding | target encode | mean encoding | targetencoder
encoding.label_enc: label encoding | ordinal encoding | integer codes | label encode | ordinalencoder | labelencoder
encoding.freq_enc: frequency encoding | count encoding
encoding.hashing: hashing trick | feature hashing | hashing encoder
encoding.cat_embedding: learned embeddings | entity embeddings | embedding layer for categorical
    | categorical embeddings

impute.median: median | median imputation
impute.mean_impute: mean imputation
impute.mode_impute: mode imputation | most frequent imputation
impute.knn_impute: knnimputer | knn imputer
impute.drop_rows: drop rows | dropping rows | listwise deletion
impute.iterative_impute: iterativeimputer | iterative imputer | iterative imputation | mice
impute.missing_indicator: missing indicator | missingness indicator | add indicator

features.pca: pca | principal component analysis
features.poly: polynomial features | polynomialfeatures | interaction terms | interaction features
features.select: feature selection | selectkbest | mutual information | select the top features
features.outliers: outliers | outlier removal | outlier | z score above | z score beyond | z score greater than
    | z score over
features.winsorize: winsorize | winsorise | winsorizing | percentiles | percentile
features.rfe: recursive feature elimination | rfe
features.variance_threshold: variancethreshold | variance threshold
features.correlated: correlated features | drop correlated

sampling.shuffle: shuffle | reshuffle | shuffling | shuffle true
sampling.subsample: subsample | subset | subsampling | subsampled
sampling.full_data: full training set | full dataset | all the data | whole training set | entire training set

model.logreg: logistic regression | logisticregression
model.rf: random forest | randomforestclassifier | randomforestregressor | forest
model.gb: gradient boosting | gradientboostingclassifier | gradientboostingregressor | gbm | gbdt
model.xgb: xgboost | xgbclassifier
model.lgbm: lightgbm | lgbm
model.svm: svm | svc | support vector machine | support vector
model.knn: knn | k nearest neighbor | nearest neighbor | kneighborsclassifier | k nearest
model.dtree: decision tree | decision trees | decisiontreeclassifier
model.adaboost: adaboost
model.mlp_sk: mlpclassifier | mlpregressor
model.linreg: linear regression | ridge regression | ridge
knob.alpha_reg model.linreg: ridge alpha | alpha of the ridge | alpha of ridge
knob.alpha_reg model.lasso_model: lasso alpha | alpha of the lasso | alpha of lasso
model.extratrees: extra trees | extratrees | extratreesclassifier | extremely randomized trees
model.hgb: histgradientboosting | histgradientboostingclassifier | histgradientboostingregressor
    | hist gradient boosting
model.catboost: catboost
model.naive_bayes: naive bayes | gaussiannb | multinomialnb
model.lasso_model: lasso regression
model.sgd_clf: sgdclassifier | sgd classifier
model.bagging: bagging | baggingclassifier
model.voting: voting classifier | votingclassifier | soft voting
kernel.rbf: rbf | rbf kernel | gaussian kernel
kernel.poly_kernel: polynomial kernel | poly kernel
kernel.linear_kernel: linear kernel

block.residual: residual connection | residual connections | skip connection | skip connections | residual
    | shortcut connection
block.dense_conn: dense connections | densenet | dense connectivity
block.se: squeeze and excitation | se block | se module | se modules | channel attention
block.self_attention: self attention | self attention layer | attention layer | attention block
block.depthwise: depthwise separable | depthwise | depthwise separable convolution | pointwise
block.dilated: dilated | dilation | dilated convolution | atrous
block.bidirectional: bidirectional | bidirectional lstm | birnn
block.gated: gating mechanism | gated unit | highway | highway network
block.transposed: transposed convolution | conv transpose | deconvolution | upsampling
seqmodel.rnn: recurrent | recurrent layer | recurrent network | rnn | recurrent neural network
seqmodel.lstm: lstm
seqmodel.gru: gru
seqmodel.transformer: transformer encoder | transformer
seqmodel.conv1d: conv1d | 1d cnn | 1d convolution | temporal convolution
seqmodel.tcn: tcn | temporal convolutional network
backbone.resnet: resnet | resnet18 | resnet 18 | resnet34 | resnet50
backbone.efficientnet: efficientnet | efficientnet b0
pretrain.pretrained: pretrained | pre trained | imagenet | imagenet pretrained
posenc.learned_pos: learned positional embedding | learned position embedding | learned positional embeddings
    | learned positional encoding
posenc.sinusoidal: sinusoidal | sinusoidal positional encoding | sinusoidal encoding
posenc.rope: rotary | rope | rotary position embedding | rotary embeddings
tying.tie_emb: weight tying | tie the embeddings | tied embeddings | tie embeddings
    | tie the input and output embeddings | tie weights | tied weights
bias.bias: bias | bias term | bias terms | bias false
seed.seed: seed | seeds | random seed | random stream | rng | random number generator | random state

text.bpe: bpe | byte pair encoding | subword | subwords | wordpiece
text.unigram_tok: unigram tokens | unigram tokenizer | unigram language model | unigram lm | unigram
text.char_tok: character level | characters | character tokens | char level
text.word_tok: word level | word tokens | word tokenization
text.lowercase: lowercase | lower case | lowercasing | lowercased
text.stopwords: stop words | stopwords | stop word
text.ngrams: bigrams | bigram | ngram range | ngrams | n grams | trigrams | ngram
text.tfidf: tf idf | tfidf | tfidfvectorizer | tfidf vectorizer
text.counts: countvectorizer | term counts | bag of words | raw counts
text.stemming: stemming | stemmer | porter stemmer
text.lemmatization: lemmatization | lemmatize | lemmatizer
text.sublinear_tf: sublinear tf | sublinear
text.byte_tok: byte level | bytes | byte tokens

precision.amp: mixed precision | amp | autocast | gradscaler | automatic mixed precision | half precision
    | grad scaler
precision.fp16: fp16 | float16
precision.bf16: bf16 | bfloat16
precision.tf32: tf32
speed.channels_last: channels last
speed.cudnn_benchmark: cudnn benchmark | cudnn autotuning | cudnn autotuner | autotuning | autotune
speed.compile: torch compile | compile
speed.grad_ckpt: gradient checkpointing | activation checkpointing
speed.parallel: n jobs | all cores | all cpu cores | parallelize | multiple cores
evaluation.best_ckpt: best checkpoint | best model | best epoch | best validation score | best validation accuracy
    | highest validation accuracy | lowest validation loss | best validation loss | highest validation score
ensemble.ensemble: ensemble | ensembling | ensembles | model averaging
ensemble.stacking: stacking ensemble | meta learner | stacked ensemble | stacking classifier | stack the models
    | stacked generalization | stack models
calibration.calibration: calibrate | calibration | calibratedclassifiercv | isotonic | platt scaling
calibration.temperature_scaling: temperature scaling
criterion.gini: gini | gini impurity
criterion.entropy_crit: entropy | entropy criterion | information gain | entropy split criterion | criterion entropy
validation.cv: cross validation | cv | crossvalidation
validation.kfold: k fold | kfold | stratifiedkfold | stratified k fold | stratified kfold
validation.loo: leave one out | loocv | leaveoneout
validation.repeated: repeated cross validation | repeats | repeated kfold | repeatedstratifiedkfold
validation.stratify: stratify | stratified split | stratified sampling | stratified
knob.n_folds: folds | number of folds | cv folds | number of cv folds | n folds | n splits
validation.single_split: single split | train validation split | single validation split

word.missing: missing values | missing value | missing | nan | nans | missing entries | nulls | null values
word.finetune: fine tune | fine tuning | finetune | finetuning | fine tuned | finetuned
word.std: standard deviation | standard deviations | std | stdev | std dev
word.minority: minority class | minority classes | rare class | rare classes | underrepresented class | minority
column.identifier: id | identifier | id column | row id | row identifier | index column
word.gradient_noise: gradient noise | noisy gradients | stochasticity
word.validation: validation | val | validation set | held out data | dev set
word.example: example | examples | sample | samples | instance | instances | row | rows
word.network: network | model | net | neural network | classifier model
word.image: image | images | picture | pictures

where.fc: hidden layer | hidden layers | fully connected | fully connected layer | fully connected layers | fc
    | fc layer | fc layers | dense layer | dense layers | linear layer | linear layers | hidden activations
    | mlp layers
where.attention: attention | attention weights | attention probabilities | attention layers | attention scores
knob.dropout where.attention: attention dropout
where.ffn: feed forward | feed forward layers | ffn | mlp block
where.embedding_layer: embedding layer | embeddings | token embedding | input embedding
where.output: final linear layer | last linear layer | final dense layer | final fully connected layer
    | last fully connected layer | final fc layer | output layer | classifier head | head | final layer | last layer
    | lm head | classification head | output projection | classifier | output
where.input: input layer | first layer
where.conv: conv layer | conv layers | convolution | convolutions | convolutional layer | convolutional layers | conv
    | convs | convolutional
where.backbone: backbone | encoder | pretrained layers | pretrained layer | feature extractor | body
where.target_var: target variable | the target | regression target | targets | target values | labels | label
where.residual_stream: residual stream | residual branch | residual branches
"""

# Words that give a change its direction, by their raw (unstemmed) form.
_DIRECTIONS = {
    "up": "increase increases increased increasing raise raises raised raising higher larger bigger more double bump "
          "tighten tighter stricter enlarge amplify prolong "
          "doubled doubling doubles triple tripled tenfold grow boost longer lengthen lengthened extend extended "
          "widen deepen stronger strengthen heavier greater expand expanded upscale aggressive aggressively faster "
          "quicker",
    "down": "decrease decreases decreased decreasing lower lowered lowering reduce reduced reduces reducing "
            "smaller less fewer halve halved halving shrink shrinking cut cutting shorter shorten shortened weaker "
            "weaken narrower narrow shallower downscale limit limiting cap relax smaller slower loosen looser lessen "
            "diminish trim soften",
    "add": "add adding added adds insert inserting introduce introducing enable enabling include put attach "
           "apply applying",
    "remove": "remove removing removed drop dropping disable disabling delete eliminate without stop stopping "
              "exclude excluding omit",
    "replace": "replace replacing swap swapping switch switching instead substitute revert",
    "use": "use using set adopt",
    "tune": "tune tuning sweep search adjust calibrate grid",
}
DIRECTION_WORDS: dict[str, str] = {w: d for d, words in _DIRECTIONS.items() for w in _list(words)}

# Verbs that open a clause saying what to do (stems): the clause's targets are the change's.
ACTION_VERBS = frozenset(stem(w) for w in _list("""
add use increase raise lower reduce decrease replace switch swap apply try train set put insert introduce enable
remove drop disable double halve cut shrink widen deepen lengthen shorten extend keep make run start stop limit
require allow pass wrap clip scale standardize normalize augment shuffle balance oversample undersample subsample
impute fill encode transform expand project decay anneal multiply warm ramp tie share initialize freeze fine
evaluate average ensemble calibrate compile pick select penalize weight regularize lowercase convert mask perturb
mirror simulate accumulate downsample process attach split hold save parallelize let move optimize stack exclude
report winsorize log go change give lengthen multiply divide tune include replace substitute inject flip crop
rotate jitter erase mix sample bump boost grow cap relax strengthen weaken upscale downscale resize hold learn
"""))

# A purpose or a prediction follows these: "should help" says why, not what.
MODAL_WORDS = frozenset(_list("should will would could may might can must hopefully likely expected"))

# "add a third hidden layer", "one more block": depth, whatever the layer is made of.
DEPTH_MARKERS = frozenset(
    stem(w) for w in _list("a an another extra additional second third fourth fifth more one two three 1 2 3"))
DEPTH_NOUNS = frozenset(stem(w) for w in _list("layer layers block blocks stage stages"))

# In the company of these models, an L2 penalty is their C (or their alpha).
ALIASES: list[tuple[str, frozenset[str], str]] = [
    ("weight_decay", frozenset(("logreg", "svm")), "regc"),
    ("weight_decay", frozenset(("linreg", "lasso_model")), "alpha_reg"),
]

# Words of a clause that states a fact or a reason ("the loss oscillates"), not what to do.
RATIONALE_WORDS = frozenset(stem(w) for w in _list("""
is are was were has have had seems seem looks look appears appear converges converge overfits overfit underfits
underfit plateaus plateau oscillates oscillate diverges diverge ignores ignore peaks peak suggests suggest
indicates indicate lacks lack shows show stalls stall remains remain varies vary becomes become explodes explode
fluctuates fluctuate saturates saturate dominates dominate tends tend usually often typically because since
"""))

# A concept that comes with another: a cosine schedule is of the learning rate, SGDR is cosine.
# The implied one is context, not a target of its own.
_IMPLIES = {
    "cosine": "warm_restarts",
    "poly_degree": "poly",
    "n_components": "pca",
    "epochs": "early_stop",
    "best_ckpt": "early_stop",
    "ce": "class_weight label_smoothing focal",
    "bce": "class_weight bce_logits",
    "bce_logits": "class_weight",
    "lstm": "bidirectional",
    "seed": "ensemble",
    "gru": "bidirectional",
    "momentum": "nesterov",
    "clip_norm": "grad_clip",
    "clip_value": "grad_clip",
    "linreg": "alpha_reg",
    "lasso_model": "alpha_reg",
    "oversample": "smote adasyn",
    "kfold": "n_folds",
    "cv": "kfold loo n_folds",
    "lr": "cosine warm_restarts step_decay exp_decay onecycle cyclic plateau linear_decay constant_lr poly_decay "
          "warmup discriminative_lr",
    "batch_size": "grad_accum balanced_sampler",
    "standardize": "per_image channel_norm",
    "tfidf": "ngrams stopwords",
    "counts": "ngrams stopwords",
    "svm": "rbf poly_kernel linear_kernel",
    "logreg": "lbfgs saga liblinear newton regc l1_ratio max_iter",
    "rf": "n_estimators max_depth min_samples_leaf min_samples_split max_features max_samples",
    "dtree": "max_depth min_samples_leaf min_samples_split",
    "gb": "n_estimators max_depth gb_subsample min_child_weight",
    "xgb": "n_estimators max_depth gb_subsample min_child_weight",
    "adaboost": "n_estimators",
    "knn": "n_neighbors",
}
IMPLIES: dict[str, frozenset[str]] = {}
for _implied, _by in _IMPLIES.items():
    for _concept in _by.split():
        IMPLIES[_concept] = IMPLIES.get(_concept, frozenset()) | {_implied}

NUMBER_WORDS = {w: str(i) for i, w in enumerate(_list("zero one two three four five six seven eight nine ten"))}

# A model named after these ("weight decay in the Adam optimizer") is where the change happens.
CONTEXT_PREPOSITIONS = frozenset(_list("to in of for on inside within into before after"))

# A clause opening with these states something ("the model underfits"); it does not say what to do.
STATEMENT_OPENERS = frozenset(_list("the our this these those it its my their there"))

LEAD_WORDS = frozenset(_list("then so and also instead we let us please simply just maybe perhaps finally first"))

# Words that end a clause (the next words are a reason, a condition or a comment).
CLAUSE_WORDS = frozenset(_list("because since which while whereas given so"))

# After "to", these make a purpose ("to reduce overfitting"), not a target value.
PURPOSE_VERBS = frozenset(stem(w) for w in _list("""
reduce improve prevent avoid stabilize speed fight help encourage capture get make fix balance focus boost close
escape regularize allow keep handle mitigate counter combat smooth accelerate ensure enable let lower increase
decrease react converge generalize train learn fit better stop address limit curb match"""))

STOPWORDS = frozenset(stem(w) for w in _list("""
a an the of to in on for from by with and or but as at is are be been being it its this that these those so than
then into onto over under via per which who whom whose what when where why how we our you your should would could
may might will can help helps improve improves improving better try trying let make makes making set setting
change changing instead value values current currently slightly bit much some very also just each every all any
same because since thus likely probably expect expected overall new old default baseline run runs there their
they them i me my do does did done doing not no yes if else only both either own other such like about around
after before during up down out off again further once here whether while still even often usually typically
hopefully might potentially rather place one two three four five six seven eight nine ten x e g ie eg
torch nn optim sklearn pytorch f functional utils lr_scheduler true false none
"""))

# Common words that carry little: they count, but a third as much as an ordinary word.
WEAK_WORDS = frozenset(stem(w) for w in _list("""
layer layers model network training train data input inputs feature features output outputs weight weights
parameter parameters use step steps rate loss performance accuracy validation val test model's net generalization
overfitting underfitting convergence stability stable faster slower fast slow small large good bad
"""))

# Rewrites of the lower-cased text before tokenizing: wordings that are one idea split across words.
REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bset (?:the )?((?:[a-z]+ ){0,3}?)(?:rate |probability |p )?to (?:zero|0(?:\.0+)?)\b", r"remove \1"),
        (r"\bn jobs\s*=?\s*-\s*1\b", " all cores "),
        (r"\b(reduce|lower|decay|drop|cut) (?:the )?(?:learning rate|lr) (?:when|once|if|on) (?:the )?(?:[a-z]+ ){0,3}"
         r"plateaus?\b", " reduce lr on plateau "),
        (r"\bstop(?:s|ping)? (?:training |the training )?(?:when|once|if|as soon as) ", " early stopping when "),
        # "at epoch 30", "every epoch": a time, not the number of epochs.
        (r"\b(at|after|every|each|per|from|until|before|first|last|final|of the|by the|end of) epochs?\b",
         r"\1 epochtime"),
        (r"\bepochs? (?=\d)", "epochtime "),
        (r"\b(every|each|per|after|at) (\d+) epochs?\b", r"\1 \2 epochtime"),
        (r"\b(\d+|more|fewer) heads\b", r"\1 attention heads"),
        (r"\b((?:decay|drop|divid|multipl|reduc|cut|lower|halv|decreas)\w* (?:the )?(?:learning rate|lr)\b[^;:,]{0,25}?"
         r"\b(?:at|every|after) (?:epochtime )?\d+)", r"\1 stepdecayschedule"),
        (r"\b((?:decay|multipl|reduc|lower|decreas)\w* (?:the )?(?:learning rate|lr)\b[^;:,]{0,25}?"
         r"\b(?:every|each|per|after every|after each) epochtime)", r"\1 expdecayschedule"),
        (r"\b(?:decay|anneal|decreas|reduc|lower)\w* (?:the )?(?:learning rate|lr) linearly\b", " linear decay "),
        (r"\baverag\w* (?:the )?(?:predictions|outputs|logits|probabilities) (?:of|from|over|across) (?:\w+ ){0,2}?"
         r"(?:models|networks|nets|runs|seeds|checkpoints)\b", " ensemble "),
        (r"\b(?:duplicat|repeat|replicat)\w* (?:the )?(?:rare|minority|underrepresented)", " oversample "),
        (r"\b(?:each|every|per) (?:image|sample|example|input) (?:individually|separately|independently|by its own|"
         r"with its own|using its own)", " per image "),
        (r"\bonly (\d+) (epochs|steps|iterations|trees|layers)\b", r"fewer \2 \1"),
        (r"\btrain\w* (?:only )?on (?:a |one )?(?:quarter|half|third|fraction|portion|subset|part|\d+%|\d+ percent) of",
         " subsample "),
        (r"\bmore (?:slowly|gradually)\b", " slower "),
        (r"\b1 ?cycle\b", " onecycle "),
        (r"\b(crank|dial|turn|scale|ramp|bump|push) (?:it |this |them )?up\b", " increase "),
        (r"\b(dial|turn|scale|tone|bring) (?:it |this |them )?down\b", " decrease "),
        (r"\bturn (?:it |this |them )?on\b", " enable "),
        (r"\bturn (?:it |this |them )?off\b", " disable "),
        (r"\bget rid of\b", " remove "),
        (r"\bno longer use\b", " remove "),
        (r"\bgo(?:ing)? back to\b", " revert to "),
        (r"\bhalf as (?:many|much|large|wide)\b", " halve "),
        (r"\b(\d+) fold\b", r"\1 folds kfold"),
        (r"\b(?:fill|impute|replace)\w* (?:in )?(?:the )?(?:missing values|missing entries|nans?|nulls|gaps|"
         r"missing data)? ?(?:with|by) (?:the |each )?(?:column |feature |training )?"
         r"(mean|median|mode|most frequent)\b", r" \1 imputation "),
        (r"\bstrategy\W*(mean|median|most.frequent)\b", r" \1 imputation "),
        (r"\bmore (?:quickly|rapidly|aggressively)\b", " faster "),
    )
]


def _build() -> tuple[dict[str, tuple[str, str]], dict[tuple[str, ...], tuple[str, ...]]]:
    concepts: dict[str, tuple[str, str]] = {}
    phrases: dict[tuple[str, ...], tuple[str, ...]] = {}
    entries: list[str] = []
    for line in _LEXICON.strip().splitlines():
        if line.startswith("    |"):
            entries[-1] += " " + line.strip()  # a long entry goes on over several lines
        elif line.strip():
            entries.append(line)
    for line in entries:
        labels_part, _, wordings = line.partition(": ")
        labels = []
        for label in labels_part.split():
            if label.startswith("dir:"):
                labels.append(label)
                continue
            family, concept = label.split(".")
            concepts[concept] = (family, family if family in ("where", "word") else "target")
            labels.append(concept)
        for wording in wordings.split("|"):
            key = tuple(stem(w) for w in _words(wording))
            if key:
                phrases[key] = tuple(dict.fromkeys((*phrases.get(key, ()), *labels)))
    return concepts, phrases


def _words(wording: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", wording.lower().replace("-", " "))


CONCEPTS, PHRASES = _build()
MAX_PHRASE = max(len(key) for key in PHRASES)
